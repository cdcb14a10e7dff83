"""Greenlets and coroutines waiting for each other on one greenwheel loop.

* :func:`await_` -- from a greenlet, wait for an awaitable: only the calling
  greenlet blocks; the hub keeps running greenlets and the asyncio loop's
  handles (the greenlet makes the loop *run* while it waits, so no one has to
  be in ``run_forever``).
* :func:`wrap_greenlet` -- from a coroutine, ``await`` a greenlet's outcome.
* :func:`spawn` -- from a coroutine, run gevent-style blocking code
  (``greenwheel.socket``, monkey-patched libraries such as ``requests``) in a
  new greenlet and ``await`` it: the code blocks only its greenlet, never the
  loop.

Cancellation maps both ways: killing a greenlet blocked in :func:`await_`
cancels the task it waits for (and waits for the task to finish cancelling);
cancelling the future of :func:`wrap_greenlet` (e.g. cancelling the task that
awaits it) kills the greenlet, and a greenlet killed by someone else cancels
the future.
"""

import asyncio

from greenlet import GreenletExit, getcurrent

from ._asyncio_loop import GreenwheelEventLoop, _thread_running_loop
from ._greenlet import Greenlet
from ._greenlet import spawn as _spawn_greenlet
from ._hub import Waiter, get_hub

__all__ = ["await_", "spawn", "wrap_greenlet"]


def _loop_for(awaitable, loop):
    if loop is None:
        if asyncio.isfuture(awaitable):
            loop = awaitable.get_loop()
        else:
            loop = _thread_running_loop()
            if loop is None:
                loop = asyncio.get_event_loop_policy().get_event_loop()
    if not isinstance(loop, GreenwheelEventLoop):
        raise TypeError(
            "await_() needs a greenwheel asyncio loop (greenwheel.asyncio.new_event_loop(), "
            "or EventLoopPolicy installed), not %r" % (loop,)
        )
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    return loop


def await_(awaitable, *, loop=None):
    """Wait, in the calling greenlet, for *awaitable* (a coroutine, task,
    future or any awaitable) and return its result or raise its exception.

    *loop*: the :class:`GreenwheelEventLoop` to run it on; by default the
    future's own loop, else the loop running in this thread, else the current
    event loop of the policy. Raises RuntimeError in the hub (coroutines run
    there: a coroutine awaits instead).
    """
    hub = get_hub()
    if getcurrent() is hub:
        raise RuntimeError(
            "await_() blocks the calling greenlet: it cannot be called from the hub "
            "(nor from a coroutine or a loop callback, which run in the hub); use await"
        )
    loop = _loop_for(awaitable, loop)
    future = asyncio.ensure_future(awaitable, loop=loop)
    if future.done():
        return future.result()
    waiter = Waiter(hub)

    def wake(_future):
        waiter.switch(None)

    future.add_done_callback(wake)
    loop._acquire()
    try:
        try:
            waiter.get()
        except BaseException:
            # Killed (or thrown into) while waiting: the work it waited for is
            # no one's any more; cancel it and let it unwind before we go.
            future.remove_done_callback(wake)
            if not future.done():
                future.cancel()
                if not future.done():
                    _wait_done(future, hub)
            raise
    finally:
        loop._release()
    return future.result()


def _wait_done(future, hub):
    waiter = Waiter(hub)

    def wake(_future):
        waiter.switch(None)

    future.add_done_callback(wake)
    try:
        waiter.get()
    finally:
        future.remove_done_callback(wake)


def wrap_greenlet(glet, *, loop=None):
    """An asyncio future (on *loop*, default the running loop) with the
    outcome of the greenwheel :class:`~greenwheel.Greenlet` *glet*: its value,
    its exception, or cancelled if it was killed with GreenletExit.
    Cancelling the future kills the greenlet (without waiting)."""
    if not isinstance(glet, Greenlet):
        raise TypeError("wrap_greenlet() needs a greenwheel Greenlet, not %r" % (glet,))
    if loop is None:
        loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(g):
        if future.done():
            return
        if g.successful():
            value = g.value
            if isinstance(value, GreenletExit):
                future.cancel()
            else:
                future.set_result(value)
        else:
            future.set_exception(g.exception)

    def on_done(f):
        if f.cancelled():
            glet.unlink(settle)
            if not glet.dead:
                glet.kill(block=False)

    glet.rawlink(settle)
    future.add_done_callback(on_done)
    return future


def spawn(function, /, *args, **kwargs):
    """From a coroutine: ``await spawn(function, *args, **kwargs)`` runs
    *function* in a new greenlet of the running loop's hub and gives its
    return value or raises its exception.

    This is how a coroutine calls gevent-style blocking code (a patched
    ``requests.get``, ``greenwheel.socket`` I/O, ``greenwheel.sleep``): the
    code blocks only its own greenlet while the loop goes on running
    coroutines and greenlets. Cancelling the awaiting task kills the greenlet
    (see :func:`wrap_greenlet`). Must be called with a greenwheel loop
    running in this thread (RuntimeError otherwise, before anything starts).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, GreenwheelEventLoop):
        raise TypeError(
            "greenwheel.asyncio.spawn() needs a greenwheel asyncio loop running, not %r" % (loop,)
        )
    return wrap_greenlet(_spawn_greenlet(function, *args, **kwargs), loop=loop)
