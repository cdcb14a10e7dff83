"""Greenlet: a cooperatively scheduled function call with a result and links.

A :class:`Greenlet` is a :class:`greenlet.greenlet` whose parent is the hub.
``start()`` queues ``self.switch`` as a loop callback, so spawned greenlets run
in spawn order the next time the spawner yields.  When the function ends, the
outcome is stored (``value`` / ``exception``) and the links registered with
:meth:`Greenlet.rawlink` / :meth:`Greenlet.link` are notified from the hub.

Both the modern gevent API and the 0.13-era one are supported: ``link()``
without a callable links the calling greenlet, which then gets a
:class:`LinkedCompleted`, :class:`LinkedFailed` or :class:`LinkedKilled`
raised inside it.
"""

from __future__ import annotations

import sys
from types import GenericAlias
from weakref import ref as _wref

from greenlet import GreenletExit, getcurrent
from greenlet import greenlet as _RawGreenlet

from ._config import config as _config
from ._config import on_change as _config_on_change
from ._core import _greenlet_run
from ._exceptions import (
    BlockingSwitchOutError,
    InvalidSwitchError,
    LinkedCompleted,
    LinkedFailed,
    LinkedKilled,
)
from ._hub import (
    Waiter,
    _check_seconds,
    _state,
    _tree_locals_for_child_of,
    get_hub,
)
from ._timeout import _NEVER, Timeout
from ._typecheck import TYPE_CHECKING, Generic, ParamSpec, TypeVar, overload
from ._wait import iwait, wait

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from types import TracebackType
    from typing import Any, NoReturn, Self, TypeAlias

    from ._core import Loop
    from ._hub import Hub
    from ._wait import _L

    #: What kill()/throw() accept: an exception class or instance, or an exc_info triple.
    _KillException: TypeAlias = (
        type[BaseException]
        | BaseException
        | tuple[type[BaseException], BaseException | object, TracebackType | None]
    )
    _ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")

__all__ = [
    "Greenlet",
    "joinall",
    "killall",
    "spawn",
    "spawn_later",
    "spawn_link",
    "spawn_link_exception",
    "spawn_link_value",
]


# --- start-event markers ----------------------------------------------------
#
# ``Greenlet._start_event`` records where a greenlet is in its life:
#   None                  never scheduled
#   _SCHEDULED            queued by start() (loop.start_soon), not yet running
#   a timer               scheduled by start_later(), not yet running
#   _STARTED              run() has begun (it may have finished since)
#   _CANCELLED            killed before it ever ran; it never will
# Both markers quack like a stopped loop event so code may stop/close them.


class _Marker:
    __slots__ = ("_name",)

    pending = False
    active = False

    def __init__(self, name: str) -> None:
        self._name = name

    def stop(self) -> None:
        pass

    close = stop

    def __repr__(self) -> str:
        return "<%s>" % self._name


_SCHEDULED = _Marker("scheduled")
_STARTED = _Marker("started")
_CANCELLED = _Marker("cancelled before start")

# Stored in _exc_info for a greenlet that finished without an error.
_SUCCESS = (None, None, None)

_raw_dead: Callable[[_RawGreenlet], bool] = _RawGreenlet.dead.__get__
_raw_throw = _RawGreenlet.throw


class _readproperty:
    """A property that an instance attribute of the same name overrides.

    Used for :attr:`Greenlet.name`: computed until assigned.
    """

    def __init__(self, func: Callable[[Any], str]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, inst: Any, owner: object) -> Any:
        if inst is None:
            return self
        return self.func(inst)


# --- link wrappers ----------------------------------------------------------


class _SpawnedLink:
    """Runs a callable link in a fresh raw greenlet (parent: the hub).

    Its own greenlet lets the callback block (sleep, join...) without
    blocking the hub.  Compares equal to the wrapped callable so that
    ``unlink(callback)`` finds it.  *when*: None fires always, True only if
    the source succeeded (link_value), False only if it failed
    (link_exception).
    """

    __slots__ = ("callback", "when")

    def __init__(self, callback: Callable[[Any], object], when: bool | None = None) -> None:
        if not callable(callback):
            raise TypeError("Expected callable: %r" % (callback,))
        self.callback = callback
        self.when = when

    def __call__(self, source: Greenlet[Any]) -> None:
        if self.when is None or source.successful() is self.when:
            _RawGreenlet(self.callback, source.parent).switch(source)

    def __hash__(self) -> int:
        return hash(self.callback)

    def __eq__(self, other: object) -> bool:
        return self.callback == getattr(other, "callback", other)

    def __repr__(self) -> str:
        return repr(self.callback)


def _linked_exception(source: Greenlet[Any]) -> LinkedCompleted | LinkedFailed:
    if source.successful():
        if isinstance(source.value, GreenletExit):
            return LinkedKilled(source)
        return LinkedCompleted(source)
    return LinkedFailed(source)


class _GreenletLink:
    """Raises a LinkedExited exception in a receiving greenlet (gevent 0.13 links).

    Compares equal to the receiving greenlet so that ``unlink(receiver)``
    (and ``unlink()`` from the receiver itself) finds it.  *when* filters as
    for :class:`_SpawnedLink`.
    """

    __slots__ = ("greenlet", "when")

    def __init__(self, greenlet: _RawGreenlet, when: bool | None = None) -> None:
        self.greenlet = greenlet
        self.when = when

    def __call__(self, source: Greenlet[Any]) -> None:
        if self.when is not None and source.successful() is not self.when:
            return
        receiver = self.greenlet
        # Throwing into a dead greenlet would raise in its parent instead.
        if not receiver.dead:
            receiver.throw(_linked_exception(source))

    def __hash__(self) -> int:
        return hash(self.greenlet)

    def __eq__(self, other: object) -> bool:
        return self.greenlet == getattr(other, "greenlet", other)

    def __repr__(self) -> str:
        return repr(self.greenlet)


def _as_exc_info(exception: _KillException) -> tuple[Any, Any, Any]:
    """Normalise what kill()/throw() accept into an ``(type, value, tb)`` triple."""
    if isinstance(exception, tuple) and len(exception) == 3:
        return exception
    if isinstance(exception, type) and issubclass(exception, BaseException):
        return (exception, exception(), None)
    if isinstance(exception, BaseException):
        return (type(exception), exception, None)
    # Not an exception at all: still kill, with something printable.
    value = BaseException(exception)
    return (BaseException, value, None)


# --- Greenlet ----------------------------------------------------------------


class _RunAttribute:
    """``Greenlet._run``: the function passed to the constructor, else the method.

    The function lives in the ``_run_fn`` slot rather than in the instance
    ``__dict__`` (which is then never created for a plain spawn: one object
    fewer per greenlet for the allocator and the garbage collector).  A
    subclass that defines its own ``_run`` method shadows this descriptor.
    """

    def __get__(self, inst: Greenlet[Any] | None, owner: type | None) -> Callable[..., Any]:
        if inst is None:
            return _default_run
        fn = inst._run_fn
        return fn if fn is not None else _default_run.__get__(inst, owner)

    def __set__(self, inst: Greenlet[Any], value: Callable[..., Any] | None) -> None:
        inst._run_fn = value

    def __delete__(self, inst: Greenlet[Any]) -> None:
        inst._run_fn = None


def _default_run(self: Greenlet[Any]) -> None:
    """Override in a subclass to run code without passing *run*."""
    return None


class Greenlet(_RawGreenlet, Generic[_T]):
    """Greenlet(run=None, *args, **kwargs)

    A function call ``run(*args, **kwargs)`` scheduled on the hub.  Creating
    one does not start it: use :meth:`start`, :meth:`start_later`, or the
    :meth:`spawn` class method.  Subclasses may override ``_run`` instead of
    passing *run*.
    """

    # Slots, not the instance dict: spawning allocates one object instead of
    # two, and the collector (which walks every live greenlet on each full
    # collection) visits half as many.  The dict still exists on demand, for
    # ``name`` and for attributes users add.
    __slots__ = (
        "args",
        "_kwargs",
        "value",
        "_start_event",
        "_exc_info",
        "_run_fn",
        "_links",
        "_notifier",
        "_ident",
        "_formatted_info",
        "spawning_greenlet",
        "_tree_locals",
    )

    if TYPE_CHECKING:
        # The slots' types.
        args: tuple[Any, ...]
        _kwargs: dict[str, Any] | None
        #: The function's return value once it succeeded (the GreenletExit
        #: instance if it was killed); None until then.
        value: _T
        _start_event: Any
        _exc_info: tuple[Any, Any, Any] | None
        _run_fn: Callable[..., Any] | None
        _links: Any
        _notifier: Any
        _ident: int | None
        _formatted_info: str | None
        spawning_greenlet: _wref[_RawGreenlet] | None
        _tree_locals: dict[Any, Any] | None
        # The hub, always (greenlet's own stubs allow any greenlet or None).
        parent: Hub

    if not TYPE_CHECKING:
        # Greenlet[int] at run time, as list[int] (see _typecheck).
        __class_getitem__ = classmethod(GenericAlias)

    _run = _RunAttribute()

    #: Kept for gevent's sake: greenwheel records no spawning stack, so
    #: :attr:`spawning_stack` is always None (gevent with
    #: ``track_greenlet_tree`` off gives the same).
    spawning_stack_limit = 10
    spawning_stack = None

    @overload
    def __init__(self, run: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> None: ...
    @overload
    def __init__(self, run: None = None, *args: Any, **kwargs: Any) -> None: ...
    def __init__(self, run: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> None:
        hub = _state.hub
        if hub is None:
            hub = get_hub()
        _RawGreenlet.__init__(self, None, hub)
        # The spawn tree, as gevent keeps it: a weak reference to the
        # greenlet that created this one (one shared weakref object per
        # spawner, so this costs no allocation per spawn), and the
        # spawn-tree locals of the spawner's tree.
        # (Off with config.track_greenlet_tree = False: both stay None.)
        if _track_tree:
            spawner = getcurrent()
            self.spawning_greenlet = _wref(spawner)
            if isinstance(spawner, Greenlet):
                tree = spawner._tree_locals
                if tree is None and spawner.spawning_greenlet is not None:
                    tree = spawner._tree_locals = {}
                self._tree_locals = tree
            elif spawner.parent is None:
                self._tree_locals = None  # a main greenlet: a new tree, made when first used
            else:
                # A raw greenlet (spawn_raw's, the hub's, a greenlet.greenlet).
                self._tree_locals = _tree_locals_for_child_of(spawner)
        else:
            self.spawning_greenlet = None
            self._tree_locals = None
        self._run_fn = run
        if not callable(self._run if run is None else run):
            raise TypeError("The run argument or self._run must be callable")
        self.args = args
        # None for no keyword arguments (the common spawn): the empty dict
        # the call made is freed now instead of living as long as the
        # greenlet (see the kwargs property).
        self._kwargs = kwargs or None
        # (None until the function returns; typed as its result for the
        # common read after join()/ready().)
        self.value = None  # type: ignore[assignment]
        self._start_event = None
        # None while unfinished; _SUCCESS, or the failure's (type, value, tb).
        self._exc_info = None
        self._links = None
        self._notifier = None
        self._ident = None
        self._formatted_info = None

    # -- state ---------------------------------------------------------------

    @property
    def loop(self) -> Loop:
        return self.parent.loop

    @property
    def dead(self) -> bool:
        """True once the greenlet has finished, or was killed before it ever ran."""
        if self._start_event is _CANCELLED:
            return True
        return _raw_dead(self)

    def __bool__(self) -> bool:
        # gevent: true while started and not finished (unlike a raw greenlet,
        # which is false until it first runs).
        return self._start_event is not None and self._exc_info is None

    @property
    def started(self) -> bool:
        """True between start() and the end of the greenlet (deprecated in gevent)."""
        return bool(self)

    def ready(self) -> bool:
        """True once the greenlet has finished (successfully or not)."""
        return self._exc_info is not None or self.dead

    def successful(self) -> bool:
        """True once finished without an error; being killed with GreenletExit counts."""
        exc_info = self._exc_info
        return exc_info is not None and exc_info[1] is None

    @property
    def exception(self) -> BaseException | None:
        """The exception the function raised, or None."""
        exc_info = self._exc_info
        return exc_info[1] if exc_info is not None else None

    @property
    def exc_info(self) -> _ExcInfo | None:
        """``(type, value, traceback)`` of the failure, or None."""
        exc_info = self._exc_info
        if exc_info is not None and exc_info[0] is not None:
            return exc_info
        return None

    def _raise_exception(self) -> NoReturn:
        # Re-raise with the original traceback (with_traceback replaces what
        # earlier re-raises appended).
        raise self._exc_info[1].with_traceback(self._exc_info[2])  # type: ignore[index]

    @property
    def minimal_ident(self) -> int:
        """A small non-negative integer, unique among this hub's live greenlets."""
        ident = self._ident
        if ident is None:
            ident = self._ident = self.parent.ident_registry.get_ident(self)
        return ident

    if TYPE_CHECKING:
        #: ``Greenlet-<minimal_ident>`` unless assigned.
        name: str
    else:

        @_readproperty
        def name(self):
            """``Greenlet-<minimal_ident>`` unless assigned."""
            return "Greenlet-%d" % (self.minimal_ident,)

    def __repr__(self) -> str:
        # Like gevent: show the name only if assigned or already generated,
        # so repr() never allocates an ident by itself.
        if "name" not in self.__dict__ and self._ident is None:
            name = " "
        else:
            name = ' "%s" ' % (self.name,)
        result = "<%s%sat %s" % (type(self).__name__, name, hex(id(self)))
        formatted = self._formatinfo()
        if formatted:
            result += ": " + formatted
        return result + ">"

    def _formatinfo(self) -> str:
        info = self._formatted_info
        if info is not None:
            return info
        func = self._run
        bound_to = getattr(func, "__self__", None)
        if bound_to is self:
            funcname = "_run"
        elif bound_to is not None:
            funcname = repr(func)
        else:
            funcname = getattr(func, "__name__", "") or repr(func)
        args = [repr(arg)[:50] for arg in self.args]
        kwargs = self._kwargs
        if kwargs:
            args.extend("%s=%s" % (key, repr(value)[:50]) for key, value in kwargs.items())
        if args:
            funcname += "(" + ", ".join(args) + ")"
        # Cached: the function and arguments are dropped when the greenlet ends.
        self._formatted_info = funcname
        return funcname

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the function is called with (emptied when it ends)."""
        kwargs = self._kwargs
        if kwargs is None:
            # Made on first use: a spawn without keyword arguments keeps none.
            kwargs = self._kwargs = {}
        return kwargs

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self._kwargs = value

    @property
    def spawn_tree_locals(self) -> dict[Any, Any] | None:
        """A dict shared by every greenlet of this spawn tree: a greenlet
        spawned by a :class:`Greenlet` shares its spawner's, one spawned by
        anything else (the main greenlet) starts a new tree."""
        tree = self._tree_locals
        if tree is None and self.spawning_greenlet is not None:
            tree = self._tree_locals = {}
        return tree  # None if created while config.track_greenlet_tree was off

    @spawn_tree_locals.setter
    def spawn_tree_locals(self, value: dict[Any, Any] | None) -> None:
        self._tree_locals = value

    # -- starting ------------------------------------------------------------

    @classmethod
    def add_spawn_callback(cls, callback: Callable[[Greenlet[Any]], object]) -> None:
        """Call ``callback(greenlet)`` whenever a :class:`Greenlet` (of any
        subclass) is started, before it is scheduled.  Adding a callback
        twice calls it once; the order among callbacks is unspecified.  An
        exception from a callback propagates out of ``start()``/``spawn()``
        and the greenlet is not scheduled."""
        global _spawn_callbacks
        if not callable(callback):
            raise TypeError("callback must be callable, not %r" % (callback,))
        if _spawn_callbacks is None:
            _spawn_callbacks = set()
        _spawn_callbacks.add(callback)

    @classmethod
    def remove_spawn_callback(cls, callback: Callable[[Greenlet[Any]], object]) -> None:
        """Remove a callback added with :meth:`add_spawn_callback` (no error if absent)."""
        global _spawn_callbacks
        if _spawn_callbacks is not None:
            _spawn_callbacks.discard(callback)
            if not _spawn_callbacks:
                _spawn_callbacks = None

    def start(self) -> None:
        """Schedule the greenlet to run the next time the current greenlet yields."""
        if self._start_event is None:
            if _spawn_callbacks is not None:
                _call_spawn_callbacks(self)
            # The loop switches into us directly (no bound method, no
            # callback object); it skips us if we were started otherwise.
            self.parent.loop.start_soon(self)
            self._start_event = _SCHEDULED

    def start_later(self, seconds: float) -> None:
        """Schedule the greenlet to run *seconds* from now."""
        if self._start_event is None:
            if _spawn_callbacks is not None:
                _call_spawn_callbacks(self)
            timer = self.parent.loop.timer(_check_seconds(seconds))
            timer.start(self.switch, update=True)
            self._start_event = timer

    @classmethod
    def spawn(cls, *args: Any, **kwargs: Any) -> Self:
        """spawn(function, *args, **kwargs) -> Greenlet: create and start."""
        glet = cls(*args, **kwargs)
        glet.start()
        return glet

    @classmethod
    def spawn_later(cls, seconds: float, *args: Any, **kwargs: Any) -> Self:
        """spawn_later(seconds, function, *args, **kwargs) -> Greenlet"""
        seconds = _check_seconds(seconds)
        if cls is Greenlet and not args and "run" not in kwargs:
            raise TypeError("spawn_later() needs a function to run")
        glet = cls(*args, **kwargs)
        glet.start_later(seconds)
        return glet

    @classmethod
    def spawn_link(cls, *args: Any, **kwargs: Any) -> Self:
        """Spawn and :meth:`link` the new greenlet to the calling greenlet."""
        glet = cls.spawn(*args, **kwargs)
        glet.link()
        return glet

    @classmethod
    def spawn_link_value(cls, *args: Any, **kwargs: Any) -> Self:
        """Spawn and :meth:`link_value` the new greenlet to the calling greenlet."""
        glet = cls.spawn(*args, **kwargs)
        glet.link_value()
        return glet

    @classmethod
    def spawn_link_exception(cls, *args: Any, **kwargs: Any) -> Self:
        """Spawn and :meth:`link_exception` the new greenlet to the calling greenlet."""
        glet = cls.spawn(*args, **kwargs)
        glet.link_exception()
        return glet

    # -- running -------------------------------------------------------------

    # The body of every greenlet, in Rust (greenwheel._core._greenlet_run):
    # honour a kill before start, mark started, close the start event, call
    # the function with args/kwargs, then _report_result / _report_error and
    # always _free.  Native code means no interpreter frame under the user's
    # function (nor any frame stack at all for a native function).  A plain
    # function, not a method: greenlet holds what ``self.run`` returns for as
    # long as the greenlet lives, and a bound method would be one more object
    # per parked greenlet.  Called without an argument it runs the current
    # greenlet (the one greenlet is starting); ``Greenlet.run(glet)`` also
    # works, as gevent's unbound method.
    run = _greenlet_run

    def _free(self) -> None:
        # A finished greenlet must not keep its function and arguments alive.
        self._run_fn = None
        self.args = ()
        kwargs = self._kwargs
        if type(kwargs) is dict:
            kwargs.clear()
        elif kwargs is not None:  # a mapping assigned by the user: not ours to empty
            self._kwargs = None

    def _report_result(self, result: Any) -> None:
        self._exc_info = _SUCCESS
        self.value = result
        if self._links is not None and self._notifier is None:
            self._notifier = self.parent.loop.run_callback(self._notify_links)

    def _report_error(self, exc_info: tuple[Any, Any, Any]) -> None:
        if isinstance(exc_info[1], GreenletExit):
            # Being killed is a normal way to end: success, with the
            # exception as the value.  Its traceback is of no use to anyone
            # and would keep every frame (and local) of the greenlet alive
            # for as long as the greenlet is referenced.
            exc_info[1].__traceback__ = None
            self._report_result(exc_info[1])
            return
        self._exc_info = exc_info
        hub = self.parent
        if self._links is not None and self._notifier is None:
            self._notifier = hub.loop.run_callback(self._notify_links)
        hub.handle_error(self, *exc_info)

    # -- killing -------------------------------------------------------------

    def _maybe_kill_before_start(self, exception: _KillException) -> bool:
        """If this greenlet never ran, make sure it never will and report it dead.

        Returns True if the greenlet is dead afterwards (so no exception needs
        to be delivered into it).
        """
        event = self._start_event
        if event is _STARTED:
            return False
        if event is _CANCELLED:
            return True
        self._start_event = _CANCELLED
        if event is not None:
            event.close()
        self._free()
        if self._exc_info is None:
            self._report_error(_as_exc_info(exception))
        return True

    def kill(
        self,
        exception: _KillException = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Raise *exception* in the greenlet (default: :class:`GreenletExit`).

        A greenlet that has not started yet never runs its function.  With
        *block* (the default) wait until it has died, at most *timeout*
        seconds; the greenlet may catch the exception and keep going.  Never
        raises (except for a bad *timeout*), and may be called repeatedly.
        """
        if timeout is not None:
            _check_seconds(timeout)
        if self._maybe_kill_before_start(exception):
            return
        if self.ready():
            return
        hub = self.parent
        waiter = Waiter(hub) if block else None
        hub.loop.run_callback(_kill, self, exception, waiter)
        if waiter is not None:
            waiter.get()
            self.join(timeout)

    def throw(self, *args: Any) -> None:
        """Raise an exception in the greenlet right now (call from the hub only).

        Use :meth:`kill` from other greenlets.  An unstarted greenlet is
        cancelled and reported dead without running.
        """
        if self._start_event is not _STARTED:
            exception: _KillException
            if not args:
                exception = GreenletExit
            elif len(args) == 1:
                exception = args[0]
            else:
                exception = (args[0], args[1], args[2] if len(args) > 2 else None)
            self._maybe_kill_before_start(exception)
            return
        if not self.dead:
            _raw_throw(self, *args)

    # -- waiting -------------------------------------------------------------

    def join(self, timeout: float | None = None) -> None:
        """Wait until the greenlet finishes or *timeout* passes; return None either way."""
        if self._exc_info is not None or self.ready():
            return
        current = getcurrent()
        hub = self.parent
        if current is hub:
            raise BlockingSwitchOutError(
                "Impossible to call blocking function in the event loop callback"
            )
        switch = current.switch
        self.rawlink(switch)
        try:
            timer = _NEVER if timeout is None else Timeout._start_new_or_dummy(timeout)
            try:
                result = hub.switch()
                if result is not self:
                    raise InvalidSwitchError("Invalid switch into Greenlet.join(): %r" % (result,))
            finally:
                timer.cancel()
        except Timeout as ex:
            self.unlink(switch)
            if ex is not timer:
                raise
        except:  # unlink on every way out, then re-raise
            self.unlink(switch)
            raise

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """Return the result or re-raise the exception of the finished greenlet.

        Waits for it unless *block* is false; raises :class:`Timeout` if it is
        not finished and *block* is false or *timeout* passes.
        """
        if not self.ready():
            if not block:
                raise Timeout()
            current = getcurrent()
            hub = self.parent
            if current is hub:
                raise BlockingSwitchOutError(
                    "Impossible to call blocking function in the event loop callback"
                )
            switch = current.switch
            self.rawlink(switch)
            try:
                timer = _NEVER if timeout is None else Timeout._start_new_or_dummy(timeout)
                try:
                    result = hub.switch()
                    if result is not self:
                        raise InvalidSwitchError(
                            "Invalid switch into Greenlet.get(): %r" % (result,)
                        )
                finally:
                    timer.cancel()
            except:  # unlink on every way out, then re-raise
                self.unlink(switch)
                raise
        if self.successful():
            return self.value
        if self._exc_info is None:
            # Died without ever reporting (a raw greenlet.throw into it):
            # there is no result to return.
            raise GreenletExit()
        self._raise_exception()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if typ is None:
            try:
                self.join()
            finally:
                self.kill()
        else:
            self.kill((typ, value, tb))

    # -- links ---------------------------------------------------------------

    # ``_links`` is None, the one link itself, or a list of two or more:
    # joinall() and wait() put exactly one link on every greenlet, and a list
    # per greenlet would be one more object for the collector to walk.

    def has_links(self) -> int:
        links = self._links
        if links is None:
            return 0
        return len(links) if type(links) is list else 1

    def rawlink(self, callback: Callable[[Self], object]) -> None:
        """Call ``callback(self)`` from the hub once the greenlet has finished.

        Also fires (soon) if the greenlet has already finished.  The callback
        runs inside the hub: it must not block or raise.
        """
        if not callable(callback):
            raise TypeError("Expected callable: %r" % (callback,))
        links = self._links
        if links is None:
            self._links = callback
        elif type(links) is list:
            links.append(callback)
        else:
            self._links = [links, callback]
        if self._notifier is None and self.ready():
            self._notifier = self.parent.loop.run_callback(self._notify_links)

    def link(
        self,
        receiver: Callable[[Self], object] | _RawGreenlet | None = None,
        _when: bool | None = None,
    ) -> None:
        """Notify *receiver* when this greenlet ends.

        * A callable is called with this greenlet, in a new greenlet.
        * A greenlet gets :class:`LinkedCompleted`, :class:`LinkedKilled` or
          :class:`LinkedFailed` raised inside it.
        * None means the calling greenlet; if this greenlet has already
          finished, the exception is raised right away.
        """
        current = getcurrent()
        link: _GreenletLink | _SpawnedLink
        if receiver is None or receiver is current:
            link = _GreenletLink(current, _when)
            if self.ready():
                link(self)
                return
        elif isinstance(receiver, _RawGreenlet):
            link = _GreenletLink(receiver, _when)
        elif callable(receiver):
            link = _SpawnedLink(receiver, _when)
        else:
            raise TypeError("Expected callable or greenlet: %r" % (receiver,))
        self.rawlink(link)

    def link_value(self, receiver: Callable[[Self], object] | _RawGreenlet | None = None) -> None:
        """Like :meth:`link`, but only if the greenlet ends successfully."""
        self.link(receiver, True)

    def link_exception(
        self, receiver: Callable[[Self], object] | _RawGreenlet | None = None
    ) -> None:
        """Like :meth:`link`, but only if the greenlet dies with an exception."""
        self.link(receiver, False)

    def unlink(self, receiver: object = None) -> None:
        """Remove a link added by :meth:`link` / :meth:`rawlink` (default: the caller's)."""
        if receiver is None:
            receiver = getcurrent()
        links = self._links
        if type(links) is list:
            try:
                links.remove(receiver)
            except ValueError:
                pass
        elif links is not None and (links is receiver or links == receiver):
            self._links = None

    def unlink_all(self) -> None:
        """Remove every link."""
        self._links = None

    def _notify_links(self) -> None:
        try:
            # Links may add or remove links while we go: take one at a time.
            while True:
                links = self._links
                if links is None:
                    break
                if type(links) is list:
                    if not links:
                        self._links = None
                        break
                    link = links.pop(0)
                else:
                    link = links
                    self._links = None
                try:
                    link(self)
                except:  # noqa: E722 - one bad link must not starve the others
                    self.parent.handle_error((link, self), *sys.exc_info())
        finally:
            self._notifier = None


def _kill(glet: Greenlet[Any], exception: _KillException, waiter: Waiter | None) -> None:
    # Runs in the hub, queued by Greenlet.kill().
    try:
        if isinstance(exception, tuple) and len(exception) == 3:
            glet.throw(*exception)
        else:
            glet.throw(exception)
    except:  # noqa: E722 - report, and still release the waiting killer
        glet.parent.handle_error(glet, *sys.exc_info())
    if waiter is not None:
        waiter.switch(None)


#: config.track_greenlet_tree, where Greenlet.__init__ looks (kept current by
#: the config, which calls _set_track_tree when the setting is assigned).
_track_tree = _config.track_greenlet_tree


def _set_track_tree(value: bool) -> None:
    global _track_tree
    _track_tree = value


_config_on_change("track_greenlet_tree", _set_track_tree)

#: The callbacks of Greenlet.add_spawn_callback (None while there are none,
#: so that start() pays one global lookup).
_spawn_callbacks: set[Callable[[Greenlet[Any]], object]] | None = None


def _call_spawn_callbacks(glet: Greenlet[Any]) -> None:
    for callback in list(_spawn_callbacks or ()):
        callback(glet)


if TYPE_CHECKING:
    # The module-level functions are the class methods bound to Greenlet
    # (below); for the type checker they take the function first, so that
    # spawn(f, 1) is a Greenlet of what f returns and checks f's arguments.

    def spawn(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Greenlet[_R]:
        """spawn(function, *args, **kwargs) -> Greenlet: create and start."""

    def spawn_later(
        seconds: float, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
    ) -> Greenlet[_R]:
        """spawn_later(seconds, function, *args, **kwargs) -> Greenlet"""

    def spawn_link(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Greenlet[_R]:
        """Spawn and :meth:`~Greenlet.link` the new greenlet to the calling greenlet."""

    def spawn_link_value(
        function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
    ) -> Greenlet[_R]:
        """Spawn and :meth:`~Greenlet.link_value` the new greenlet to the calling greenlet."""

    def spawn_link_exception(
        function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
    ) -> Greenlet[_R]:
        """Spawn and :meth:`~Greenlet.link_exception` the new greenlet to the calling greenlet."""

else:
    spawn = Greenlet.spawn
    spawn_later = Greenlet.spawn_later
    spawn_link = Greenlet.spawn_link
    spawn_link_value = Greenlet.spawn_link_value
    spawn_link_exception = Greenlet.spawn_link_exception


def joinall(
    greenlets: Collection[_L],
    timeout: float | None = None,
    raise_error: bool = False,
    count: int | None = None,
) -> list[_L]:
    """Wait for *greenlets* to finish; return those that did (in finishing order).

    With *raise_error*, raise the first failure as soon as it is seen.  *count*
    limits how many to wait for; *timeout* how long.
    """
    if not raise_error:
        return wait(greenlets, timeout=timeout, count=count)
    done = []
    for glet in iwait(greenlets, timeout=timeout, count=count):
        if getattr(glet, "exception", None) is not None:
            raising = getattr(glet, "_raise_exception", None)
            if raising is not None:
                raising()
            raise glet.exception  # type: ignore[attr-defined]
        done.append(glet)
    return done


def _killall_and_report(
    greenlets: list[Any], exception: _KillException, waiter: Waiter | None
) -> None:
    # Runs in the hub: throw into each greenlet, then tell the waiting
    # killer which ones survived (caught the exception).
    survivors = []
    for glet in greenlets:
        if not glet.dead:
            try:
                glet.throw(exception)
            except:  # noqa: E722
                glet.parent.handle_error(glet, *sys.exc_info())
            if not glet.dead:
                survivors.append(glet)
    if waiter is not None:
        waiter.switch(survivors)


def killall(
    greenlets: Iterable[_RawGreenlet],
    exception: _KillException = GreenletExit,
    block: bool = True,
    timeout: float | None = None,
) -> None:
    """Kill all *greenlets* (a finite iterable) with *exception*.

    With *block*, wait until all are dead (survivors that caught the exception
    are joined), raising :class:`Timeout` if *timeout* passes first.
    """
    if timeout is not None:
        _check_seconds(timeout)
    need_killing = []
    for glet in greenlets:
        cancel = getattr(glet, "_maybe_kill_before_start", None)
        if cancel is None or not cancel(exception):
            need_killing.append(glet)
    if not need_killing:
        return
    hub = get_hub()
    if not block:
        hub.loop.run_callback(_killall_and_report, need_killing, exception, None)
        return
    waiter = Waiter(hub)
    hub.loop.run_callback(_killall_and_report, need_killing, exception, waiter)
    timer = Timeout._start_new_or_dummy(timeout)
    try:
        survivors = waiter.get()
        if survivors:
            joinall(survivors, raise_error=False)
    finally:
        timer.cancel()
