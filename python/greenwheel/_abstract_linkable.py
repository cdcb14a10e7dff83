"""The machinery shared by events, semaphores and queues.

Three pieces live here:

* :class:`_Scheduler`, one per hub: the hub's handle on its loop's
  notification scheduler (through which every primitive gets its waiters
  woken), plus the door (an async watcher) other OS threads use to reach
  that hub.
* :class:`AbstractLinkable`, the base of ``Event``, ``AsyncResult`` and
  ``Semaphore``: an ordered list of links (callables, usually the ``switch``
  method of a parked greenlet) notified from the hub once the object is ready.
* :class:`_ThreadWaiter`, which lets a real OS thread wait on a primitive
  owned by another thread's hub.

How a wake-up travels
---------------------
A greenlet that must wait appends its own ``switch`` to the object's links
and parks (``Loop.park``); no :class:`~greenwheel._hub.Waiter` is allocated.
Whoever makes the object ready (``Event.set``, ``Semaphore.release``,
``Queue.put``) never switches: it hands the object to the loop's
notification scheduler (``Loop.make_ready``), which notifies the ready
objects in order from the hub; each object calls its links in the order they
were added.  The scheduler -- its ready queue, its drain, the order it keeps
with the loop's other callbacks and the hand-over that halves the switches of
a ping-pong -- lives in the loop: see ``rust/py/loop_/sched.rs``.  What the
scheduler asks of an object is :meth:`AbstractLinkable._single_link` (resume
exactly one parked greenlet?) and :meth:`AbstractLinkable._notify_links`.

Threads
-------
Each object belongs to the hub of the first thread that had to wait on it
(its *owner*).  Setting, releasing or putting from any other OS thread does
the cheap, atomic part (flag, counter, deque item) in place and posts the
object's ``make_ready`` to the owner's hub through its async watcher, the
only loop object another thread may touch.  A waiter re-checks the condition *after* linking
itself, and a setter checks for links *after* changing the state, so under
the GIL one of the two always sees the other: no wake-up is lost.
"""

from __future__ import annotations

import _thread
import sys
import threading
import weakref
from collections import deque

from greenlet import getcurrent

from ._exceptions import BlockingSwitchOutError, InvalidSwitchError, InvalidThreadUseError
from ._hub import _check_seconds, _state, get_hub
from ._timeout import Timeout, _wait_under
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._hub import Hub

__all__ = ["AbstractLinkable"]

_get_ident = _thread.get_ident
# Python threads alive besides the main thread; a cheap C call.  While there
# are none, a parked greenlet can only be woken by its own hub's thread.
_thread_count = _thread._count
_threading_active = threading._active  # type: ignore[attr-defined]
_threading_limbo = threading._limbo  # type: ignore[attr-defined]
_DummyThread = threading._DummyThread
_allocate_lock = _thread.allocate_lock
_main_ident = threading.main_thread().ident
# (All captured at import, which monkey-patching makes sure happens while
# _thread is still the real one.)
_thread_local = _thread._local()


class _ThreadToken:
    """Lives exactly as long as its OS thread: thread-local storage holds it."""

    __slots__ = ("__weakref__",)


def _thread_token() -> _ThreadToken:
    token = getattr(_thread_local, "token", None)
    if token is None:
        token = _thread_local.token = _ThreadToken()
    return token


#: Passed to a waiting greenlet's ``switch`` by its timeout timer.
_TIMEDOUT = object()

#: Returned by a ``_ThreadWaiter``'s *take* when the resource is gone.
_NOT_TAKEN = object()


def _discard(seq: Any, item: object) -> None:
    try:
        seq.remove(item)
    except ValueError:
        pass


def _blocking_from_hub() -> BlockingSwitchOutError:
    return BlockingSwitchOutError("Impossible to call blocking function in the event loop callback")


def _may_be_woken_by_threads() -> bool:
    """True if another thread might wake a greenlet parked now.

    That is any other thread started with :mod:`threading` (daemon or not):
    while one lives, a parked greenlet keeps its hub's loop alive
    (:meth:`_Scheduler.hold`) instead of ending in LoopExit.  Threads started
    with ``_thread`` directly (thread pool workers) do not count.
    """
    if not _thread_count():
        return False
    me = _get_ident()
    for ident, thread in list(_threading_active.items()):
        if ident != me and not isinstance(thread, _DummyThread):
            return True
    return bool(_threading_limbo)


def _park(
    hub: Hub,
    sched: _Scheduler,
    links: Any,
    entry: object,
    switch: Callable[..., Any],
    timeout: float | None,
) -> Any:
    """Switch the current greenlet out until something resumes it; return the value.

    *entry* (usually *switch*, the greenlet's own ``switch``) must already be
    in *links*; it is removed again if the wait ends with an exception.  With
    a *timeout* (seconds, already checked) the value is ``_TIMEDOUT`` when it
    passes first.  Callers inline the untimed case on their hot paths.
    """
    held = _may_be_woken_by_threads()
    if held:
        # Another thread may be what we wait for: keep the loop from exiting.
        sched.hold()
    timer = None
    try:
        if timeout is not None:
            timer = hub.loop.timer(timeout)
            timer.start(switch, _TIMEDOUT, update=True)
        return sched.park(hub)
    except:  # killed or timed out from outside: unlink, re-raise
        _discard(links, entry)
        raise
    finally:
        if timer is not None:
            timer.close()
        if held:
            sched.unhold()


class _Scheduler:
    """A hub's handle on its loop's notification scheduler, and the door for other threads.

    The ready queue, its drain and the hand-over budget live in the loop
    (``rust/py/loop_/sched.rs``); this object binds the two entry points once
    per hub and keeps what concerns other OS threads: an inbox drained by an
    async watcher, and :meth:`hold` / :meth:`unhold`.
    """

    __slots__ = (
        "hub",
        "loop",
        "ident",
        "_thread_alive",
        "make_ready",
        "park",
        "_inbox",
        "_async",
        "_holds",
        "__weakref__",
    )

    if TYPE_CHECKING:
        #: ``make_ready(obj) -> bool``: queue *obj*'s notification (its
        #: ``_single_link`` / ``_notify_links`` run from the hub soon); False,
        #: doing nothing, when called from another thread (then use
        #: :meth:`make_ready_from_thread`).
        make_ready: Callable[[Any], bool]
        #: ``park(hub) -> value``: switch the current greenlet out (to *hub*,
        #: or straight to the next ready object's single waiter) until
        #: something switches back in with *value*.
        park: Callable[[Hub], Any]

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.loop = loop = hub.loop
        self.ident = hub.thread_ident
        # Dead once the thread exits (threading.current_thread() would not
        # do: monkey-patched, it describes the current greenlet).
        self._thread_alive = weakref.ref(_thread_token())
        # Bound once: the hot paths call them without an attribute lookup
        # on the loop.
        self.make_ready = loop.make_ready
        self.park = loop.park
        self._inbox: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        # Not referenced: an idle door must not keep the loop alive.  It is
        # referenced while greenlets wait and other threads exist (hold()).
        self._async = watcher = loop.async_(False)
        watcher.start(self._drain_inbox)
        self._holds = 0

    def close(self) -> None:
        """The hub is destroyed: objects it owned are no longer notified.

        (Its loop may live on with the thread's next hub; the objects'
        waiters were that hub's greenlets.)
        """
        self.make_ready = _dropped
        if self.ident == _get_ident():
            # Made ready before the destroy, not notified yet.
            self.loop._forget_ready()

    # -- any thread -------------------------------------------------------

    def make_ready_from_thread(self, obj: object) -> None:
        """:attr:`make_ready` for a thread other than the hub's."""
        if self.alive():
            self.post(self.make_ready, obj)

    def post(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` in the hub's thread, from the loop.  Thread-safe."""
        self._inbox.append((func, args))
        self._async.send()

    def alive(self) -> bool:
        """False once the hub is destroyed or its thread has exited."""
        return self.hub.loop is self.loop and self._thread_alive() is not None

    # -- hub side ---------------------------------------------------------

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        hub = self.hub
        while inbox:
            func, args = inbox.popleft()
            try:
                func(*args)
            except:  # noqa: E722 - runs in the hub; report, never propagate
                hub.handle_error(func, *sys.exc_info())

    def hold(self) -> None:
        """Keep the loop alive while a greenlet waits for what a thread may do."""
        self._holds += 1
        if self._holds == 1:
            self._async.ref = True

    def unhold(self) -> None:
        self._holds -= 1
        if not self._holds:
            self._async.ref = False


def _dropped(obj: object) -> bool:
    # make_ready of a closed scheduler: nothing to do, from any thread.
    return True


def _scheduler_for(hub: Hub) -> _Scheduler:
    sched = hub.__dict__.get("_greenwheel_scheduler")
    if sched is None or sched.loop is not hub.loop:
        sched = hub._greenwheel_scheduler = _Scheduler(hub)
    return sched


class _ThreadWaiter:
    """A link that wakes a real OS thread blocked on a native lock.

    Used when a thread that does not own a primitive has to wait for it.
    Whichever side first takes ``claim`` decides the outcome: the hub (the
    wake-up counts, and ``take`` runs in the hub) or the timed-out thread
    (the wake-up is void and the hub skips it).
    """

    __slots__ = ("done", "claim", "take", "value")

    if TYPE_CHECKING:
        #: What *take* returned in the hub (or a marker a subclass sets).
        value: Any
        take: Any

    def __init__(self, take: Callable[[Any], Any] | None = None) -> None:
        self.done = _allocate_lock()
        self.done.acquire()
        self.claim = _allocate_lock()
        self.take = take
        self.value = None

    def __call__(self, source: Any) -> None:
        # From the owner's hub, or from whichever thread made the object ready
        # (_serve_threads).  Take first: another thread may have taken the
        # resource since the notification checked it was there.
        take = self.take
        if take is None:
            value = None
        else:
            value = take(source)
            if value is _NOT_TAKEN:
                source._links.appendleft(self)  # keep our place in line
                return
        if self.claim.acquire(False):
            self.value = value
            self.done.release()
        elif take is not None:
            # The thread gave up meanwhile: hand the resource back.
            source._give_back(value)

    def wait(self, timeout: float | None) -> bool:
        """Block this thread; True if woken, False if *timeout* passed first."""
        if timeout is None:
            self.done.acquire()
            return True
        if self.done.acquire(True, max(0.0, _check_seconds(timeout))):
            return True
        if self.claim.acquire(False):
            return False
        # The hub claimed us just as we gave up: it is finishing the wake-up.
        self.done.acquire()
        return True


class AbstractLinkable:
    """Base for objects greenlets wait on: links notified from the hub when ready.

    Subclasses define :meth:`ready`.  With ``_notify_all`` true (events) every
    link present when the notification runs is called; otherwise
    (semaphores) links are called only while the object stays ready.
    """

    __slots__ = ("hub", "_sched", "_links", "_late", "_notifying", "_raw", "__weakref__")

    if TYPE_CHECKING:
        #: The owner hub (None until the first wait captures one).
        hub: Hub | None
        _sched: Any
        _links: deque[Any]
        _late: list[Any] | None
        _notifying: bool
        _raw: int

    _notify_all = True

    def __init__(self, hub: Hub | None = None) -> None:
        # The owner hub is captured lazily, by the first wait: objects may be
        # created at import time, or in one thread and used in another.
        self.hub = hub
        self._sched = _scheduler_for(hub) if hub is not None else None
        self._links = deque()
        # Waiters that arrived while a notification was already due and the
        # object was ready (gevent issue 1520): they are woken after the
        # others, in the same notification.
        self._late = None
        self._notifying = False
        # Non-zero once a link other than a parked greenlet's switch was added:
        # 1 for rawlinks and late waiters (reset when the links run out), 2
        # once a thread waited (for good: threads link without the owner).
        # Either way no hand-over (_single_link).
        self._raw = 0

    def ready(self) -> bool:
        raise NotImplementedError

    def linkcount(self) -> int:
        return len(self._links)

    # -- ownership ----------------------------------------------------------

    def _capture(self) -> bool:
        """Make sure the calling thread may park here; False if another thread owns us.

        Called on the slow path of every wait: when no hub is recorded yet, or
        the current greenlet is not a child of the recorded one.
        """
        owner = self.hub
        mine = _state.hub
        if owner is not None and owner is not mine:
            if self._sched.alive():
                return False
            # The owner hub was destroyed or its thread is gone: none of its
            # greenlets can be waiting any more.
            self._orphan()
        if mine is None:
            if _get_ident() != _main_ident:
                # A plain thread (no hub, no greenlets): it waits on a native
                # lock, and needs no hub for that.
                return False
            mine = get_hub()
        if self.hub is not mine:
            self.hub = mine
            self._sched = _scheduler_for(mine)
        return True

    def _orphan(self) -> None:
        # Forget a dead owner and its greenlets' links; plain threads waiting
        # on native locks stay in line.
        self.hub = None
        self._sched = None
        links = self._links
        threads = [link for link in links if isinstance(link, _ThreadWaiter)]
        links.clear()
        links.extend(threads)
        self._late = None
        self._notifying = False
        self._raw = 2 if threads else 0

    # -- notifying ----------------------------------------------------------

    def _notify_anywhere(self) -> None:
        """We may have become ready: get the waiters woken.  Any thread."""
        links = self._links
        if links and not self._notifying:
            if self._raw == 2 and isinstance(links[0], _ThreadWaiter):
                # Threads at the head of the line are woken right here: that
                # needs no hub, so it works even if the owner is not running.
                self._serve_threads()
                if not links:
                    return
            sched = self._sched
            if sched is None:
                return
            self._notifying = True
            if not sched.make_ready(self):
                sched.make_ready_from_thread(self)

    def _serve_threads(self) -> None:
        # Wake the thread waiters at the head of the links, while ready.
        links = self._links
        only_while_ready = not self._notify_all
        while links:
            if only_while_ready and not self.ready():
                return
            try:
                link = links.popleft()
            except IndexError:  # emptied by another thread
                return
            if not isinstance(link, _ThreadWaiter):
                links.appendleft(link)
                return
            link(self)

    def _check_and_notify(self) -> None:
        if self.ready():
            self._notify_anywhere()

    def _single_link(self) -> Any:
        """If notifying means resuming exactly one parked greenlet, unlink it,
        finish the notification and return its ``switch``; else None."""
        links = self._links
        if len(links) == 1 and not self._raw and (self._notify_all or self.ready()):
            self._notifying = False
            return links.popleft()
        return None

    def _notify_links(self) -> None:
        # Called by the scheduler, in the hub.  Links are popped before they
        # are called; links added meanwhile wait for the next notification,
        # except the late ones (see __init__).
        links = self._links
        # (Never None here: its owner hub's scheduler notifies it.)
        hub: Hub = self.hub  # type: ignore[assignment]
        only_while_ready = not self._notify_all
        try:
            count = len(links)
            done = set()
            while count and links:
                if only_while_ready and not self.ready():
                    break
                count -= 1
                link = links.popleft()
                key = id(link)
                if key in done:
                    continue
                done.add(key)
                try:
                    link(self)
                except:  # noqa: E722 - one bad link must not kill the hub
                    hub.handle_error((link, self), *sys.exc_info())
            late = self._late
            if late:
                self._late = None
                for link in late:
                    try:
                        link(self)
                    except:  # noqa: E722
                        hub.handle_error((link, self), *sys.exc_info())
        finally:
            self._notifying = False
            if not links and self._raw == 1:
                # Only rawlinks were there (a thread waiter marks 2 for good).
                self._raw = 0
        # Links that arrived during the notification, if we are still ready.
        if links and self.ready():
            self._notify_anywhere()

    # -- links --------------------------------------------------------------

    def rawlink(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback(self)`` from the hub once this object is ready.

        The callback runs in the hub, so it must not block; it is unlinked
        before it is called.
        """
        if not callable(callback):
            raise TypeError(f"Expected callable: {callback!r}")
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                if self._sched is None:
                    raise InvalidThreadUseError(
                        "rawlink() from a thread without a hub on an object no hub owns"
                    )
                self._sched.post(self._add_link, callback)
                return
        self._add_link(callback)

    def _add_link(self, callback: Callable[[Any], object]) -> None:
        if not self._raw:
            self._raw = 1
        self._links.append(callback)
        self._check_and_notify()

    def unlink(self, callback: object) -> None:
        """Remove a callback added by :meth:`rawlink`."""
        hub = self.hub
        if hub is not None and hub is not _state.hub and self._sched.alive():
            self._sched.post(self._remove_link, callback)
            return
        self._remove_link(callback)

    def _remove_link(self, callback: object) -> None:
        _discard(self._links, callback)
        if self._late:
            _discard(self._late, callback)

    # -- waiting ------------------------------------------------------------

    def _block(self, timeout: float | Timeout | None, late: bool = False) -> bool:
        """Park the current greenlet until notified; False if *timeout* passed.

        The caller has made sure the current thread owns this object, and
        re-checks its condition if we return True.
        """
        if timeout is not None and isinstance(timeout, Timeout):
            return _wait_under(timeout, self._block_late, late)
        # (Never None here: the caller captured this object for its hub.)
        hub: Hub = self.hub  # type: ignore[assignment]
        current = getcurrent()
        if current is hub:
            raise _blocking_from_hub()
        switch = current.switch
        links: Any
        if late:
            links = self._late
            if links is None:
                links = self._late = []
            if not self._raw:
                self._raw = 1
        else:
            links = self._links
        links.append(switch)
        if not late and self.ready():
            # Became ready (another thread) between the caller's check and
            # our linking: no need to wait.
            _discard(links, switch)
            return True
        if timeout is not None:
            timeout = _check_seconds(timeout)
        result = _park(hub, self._sched, links, switch, switch, timeout)
        if result is self:
            return True
        return self._not_notified(links, switch, result)

    def _block_late(self, late: bool, timeout: float | None) -> bool:
        return self._block(timeout, late)

    def _not_notified(self, links: Any, switch: object, result: object) -> bool:
        # Resumed by something other than our notification.
        _discard(links, switch)
        if result is _TIMEDOUT:
            return False
        raise InvalidSwitchError(f"Invalid switch into {type(self).__name__}.wait(): {result!r}")

    def _wait_foreign(
        # (A Timeout object given to a thread without a hub: _check_seconds
        # rejects it with a TypeError.)
        self,
        timeout: Any,
        take: Callable[[Any], Any] | None = None,
    ) -> _ThreadWaiter | None:
        """Wait from a thread that does not own this object, on a native lock.

        Returns the ``_ThreadWaiter`` if woken (its ``value`` is what *take*
        returned in the hub), else None.
        """
        waiter = _ThreadWaiter(take)
        # Linked right here (deques are thread-safe): marking first keeps the
        # owner's hub from treating it as a parked greenlet (_single_link).
        self._raw = 2
        self._links.append(waiter)
        if self.ready():
            self._notify_anywhere()
        if waiter.wait(timeout):
            return waiter
        _discard(self._links, waiter)
        return None

    def _at_fork_reinit(self) -> None:
        self._orphan()
