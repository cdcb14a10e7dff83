"""Timeouts: raise an exception in a greenlet once a deadline passes.

A :class:`Timeout` arms a loop timer whose callback throws into the greenlet
that started it.  Like every greenwheel blocking mechanism it only takes
effect when that greenlet yields to the hub; pure computation is not
interrupted.
"""

from greenlet import getcurrent

from ._hub import _check_seconds, _state, get_hub

__all__ = ["Timeout", "with_timeout"]


class _NeverTimer:
    """The "timer" of a Timeout that never fires (``seconds=None``) or is closed.

    Saves allocating a real loop timer for the very common "no timeout" case.
    """

    __slots__ = ()

    pending = False
    active = False

    def start(self, *args, **kwargs):
        raise AssertionError("non-expiring timer cannot be started")

    def stop(self):
        pass

    # The Timeout API too: _start_new_or_dummy() hands this out in place of
    # a Timeout, and callers cancel()/close() whatever they got.
    cancel = close = stop

    def __enter__(self):
        return self

    def __exit__(self, typ, value, tb):
        pass


_NEVER = _NeverTimer()


def _expire(glet, exception):
    # Module-level function rather than a bound method: starting a Timeout
    # then allocates nothing for the callback.  A greenlet that died without
    # cancelling its timeout must not get the exception: throwing into a dead
    # greenlet would land in its parent, the hub.
    if not glet.dead:
        glet.throw(exception)


class Timeout(BaseException):
    """Timeout(seconds=None, exception=None, ref=True)

    Raise *exception* in the greenlet that calls :meth:`start` once *seconds*
    have passed.  With ``exception=None`` the Timeout instance itself is raised;
    with ``exception=False`` it is raised too, but leaving a ``with`` block
    swallows it::

        with Timeout(5, False):
            data = sock.recv(1024)   # gives up silently after 5 s

    ``seconds=None`` never expires, which lets functions take an optional
    timeout uniformly.  Use as a context manager, or call :meth:`start` and
    then always :meth:`close` (or :meth:`cancel`, to restart it later).
    When catching Timeout, check it is your instance: an enclosing caller's
    Timeout may be the one that fired.
    """

    __slots__ = ("seconds", "exception", "timer", "_one_shot", "__weakref__")

    def __init__(self, seconds=None, exception=None, ref=True, priority=None, _one_shot=False):
        # BaseException.__new__ stored our constructor arguments in .args; a
        # Timeout's args are empty, as in gevent.  (Assigning is cheaper than
        # calling BaseException.__init__.)
        self.args = ()
        self.exception = exception
        self._one_shot = _one_shot
        self.seconds = seconds
        if seconds is None:
            self.timer = _NEVER
            return
        hub = _state.hub
        if hub is None:
            hub = get_hub()
        if ref is True and priority is None:
            # The common case; every extra argument costs in the Rust call.
            self.timer = hub.loop.timer(_check_seconds(seconds))
        else:
            self.timer = hub.loop.timer(_check_seconds(seconds), 0.0, ref, priority)

    def start(self):
        """Arm the timeout; it fires *seconds* from now in the calling greenlet."""
        timer = self.timer
        if timer.active or timer.pending:
            raise AssertionError("%r is already started; to restart it, cancel it first" % self)
        if self.seconds is None:
            return
        exception = self.exception
        if exception is None or exception is False or exception.__class__ is str:
            exception = self
        # update=True: measure from the real current time, not the loop's
        # cached time from its last poll.
        timer.start(_expire, getcurrent(), exception, update=True)

    @classmethod
    def start_new(cls, timeout=None, exception=None, ref=True, _one_shot=False):
        """Return a started Timeout.

        *timeout* may be a number (a new Timeout is created) or a Timeout
        instance (started unless already pending, and returned).
        """
        if isinstance(timeout, Timeout):
            if not timeout.pending:
                timeout.start()
            return timeout
        timeout = cls(timeout, exception, ref, _one_shot=_one_shot)
        timeout.start()
        return timeout

    @staticmethod
    def _start_new_or_dummy(timeout, exception=None, ref=True):
        # For internal ``timeout=`` parameters: None costs nothing at all, and
        # the one-shot Timeout releases its loop timer on cancel().
        if timeout is None:
            return _NEVER
        return Timeout.start_new(timeout, exception, ref, _one_shot=True)

    @property
    def pending(self):
        """True while the timeout is armed (or has fired but not yet been delivered)."""
        timer = self.timer
        return timer.active or timer.pending

    def cancel(self):
        """Disarm; the Timeout may be started again (call :meth:`close` when done)."""
        self.timer.stop()
        if self._one_shot:
            self.close()

    def close(self):
        """Disarm for good and release the loop timer."""
        self.timer.close()
        self.timer = _NEVER

    def __repr__(self):
        pending = " pending" if self.pending else ""
        exception = "" if self.exception is None else " exception=%r" % (self.exception,)
        return "<%s at %s seconds=%s%s%s>" % (
            type(self).__name__,
            hex(id(self)),
            self.seconds,
            exception,
            pending,
        )

    def __str__(self):
        if self.seconds is None:
            return ""
        suffix = "" if self.seconds == 1 else "s"
        if self.exception is None:
            return "%s second%s" % (self.seconds, suffix)
        if self.exception is False:
            return "%s second%s (silent)" % (self.seconds, suffix)
        return "%s second%s: %s" % (self.seconds, suffix, self.exception)

    def __enter__(self):
        if not self.pending:
            self.start()
        return self

    def __exit__(self, typ, value, tb):
        self.close()
        if value is self and self.exception is False:
            return True
        return None

    def __lt__(self, other):
        # gevent allows ``Timeout(1) < 2`` and ``Timeout(1) < Timeout(2)``.
        try:
            return self.seconds < other.seconds
        except AttributeError:
            try:
                return self.seconds < other
            except TypeError:
                return NotImplemented


_NOT_GIVEN = object()


def with_timeout(seconds, function, *args, **kwargs):
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
