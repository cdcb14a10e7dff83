"""Patching :mod:`_thread` and :mod:`threading` (``monkey.patch_thread``).

Ground rules:
- Patching swaps the low-level hooks ``threading`` is built on (see
  :mod:`greenwheel.threading`), never ``threading.Thread`` itself, so
  subclasses defined before patching run on greenlets too.
- The main OS thread becomes the main greenlet: its ident is re-keyed, and
  what ``join()`` waits on (the ``_tstate_lock`` before 3.13, the
  ``_ThreadHandle`` from 3.13) is green until interpreter shutdown, when the
  real one is put back, because the interpreter's own shutdown expects it.
- Threads already running stay OS threads; their ``join()`` polls.
- Version differences are decided by what the objects have (a thread handle
  or not), not by version numbers, so a new minor version with the same
  shapes needs no change here.
"""

import sys

from ._monkey_base import (
    _import,
    _module_refs,
    _queue_warning,
    is_module_patched,
    patch_item,
    patch_module,
    saved,
)
from .threading import _handle_attr


def patch_thread(
    threading=True,
    _threading_local=True,
    Event=True,
    logging=True,
    existing_locks=True,
    _warnings=None,
):
    """The implementation of :func:`greenwheel.monkey.patch_thread`."""
    import threading as threading_mod

    if is_module_patched("_thread"):
        return
    orig_current = threading_mod.current_thread()
    main_thread = threading_mod.main_thread()
    on_main = orig_current is main_thread
    others = [
        t
        for t in list(threading_mod._active.values())
        if t is not main_thread and t is not orig_current and t.is_alive()
    ]
    orig_shutdown = threading_mod._shutdown
    real_get_ident = threading_mod.get_ident

    # Import everything greenwheel needs while the world is still real.
    _import("greenwheel._threadpool")
    green_thread = _import("greenwheel.thread")
    patch_module(sys.modules["_thread"], green_thread)

    if threading:
        green_threading = _import("greenwheel.threading")
        patch_module(threading_mod, green_threading)
        if Event:
            from ._event import Event as GreenEvent

            patch_item(threading_mod, "Event", GreenEvent)
        # Guards _active/_limbo; taken around starts and stops.
        threading_mod._active_limbo_lock = green_thread.LockType()
        if existing_locks:
            _fix_existing_locks(real_get_ident, green_thread.get_ident)
        if logging and "logging" in sys.modules:
            _patch_logging(threading_mod)

    if _threading_local:
        import _threading_local

        from ._local import local

        patch_item(_threading_local, "local", local)

    if threading:
        if on_main:
            _adopt_main_thread(threading_mod, main_thread, orig_shutdown)
        else:
            # The same two warnings as gevent, word for word: programs filter on them.
            _queue_warning(
                "Monkey-patching outside the main native thread. Some APIs will not be "
                "available. Expect a KeyError to be printed at shutdown.",
                _warnings,
            )
            _queue_warning(
                "Monkey-patching not on the main thread; threading.main_thread().join() "
                "will hang from a greenlet",
                _warnings,
            )
            if _handle_attr(main_thread) is None:
                # Before 3.13 only: threading._shutdown() matches the main
                # thread by ident (3.13 marks its handle done unconditionally).
                _stop_main_thread_at_shutdown(threading_mod, main_thread, orig_shutdown)
        for thread in others:
            thread.join = _polling_join(thread)
            thread._delete = _forgiving_delete(thread, threading_mod)
        if others:
            _queue_warning(
                "Monkey-patching after threads were started: %s keep running as OS threads "
                "(their join() polls cooperatively); patch before starting threads"
                % (", ".join(t.name for t in others),),
                _warnings,
            )
    _warn_direct_thread_refs(_warnings)


def _adopt_main_thread(threading_mod, main_thread, orig_shutdown):
    from greenlet import getcurrent

    from ._lock import Lock

    # The main greenlet is "the main thread": re-key it under its new ident.
    root = getcurrent()
    while root.parent is not None:
        root = root.parent
    new_ident = id(root)
    active = threading_mod._active
    old_ident = main_thread.ident
    if active.get(old_ident) is main_thread:
        del active[old_ident]
    main_thread._ident = new_ident
    active[new_ident] = main_thread
    if _handle_attr(main_thread) is not None:
        _adopt_main_thread_handle(threading_mod, main_thread, orig_shutdown, new_ident)
        return

    # Joining the main thread from a greenlet must not block the OS thread:
    # its "thread state" lock becomes ours until interpreter shutdown.
    real_lock = main_thread._tstate_lock
    if real_lock is None:
        return
    green_lock = Lock()
    green_lock.acquire()
    main_thread._tstate_lock = green_lock
    main_thread._greenwheel_real_tstate_lock = real_lock

    def _shutdown():
        if main_thread._tstate_lock is green_lock:
            if green_lock.locked():
                green_lock.release()
            _let_joiners_run()
            # They may have marked it stopped; the interpreter's shutdown
            # expects it running, with its real lock held.
            main_thread._is_stopped = False
            main_thread._tstate_lock = real_lock
        _run_original_shutdown(threading_mod, orig_shutdown)

    patch_item(threading_mod, "_shutdown", _shutdown)


def _adopt_main_thread_handle(threading_mod, main_thread, orig_shutdown, new_ident):
    # 3.13+: joining the main thread waits on its _ThreadHandle, which the
    # interpreter marks done only as it dies; a greenlet joining it would
    # block the OS thread. Until shutdown it gets a green handle instead.
    from .thread import _make_thread_handle

    attr = _handle_attr(main_thread)
    real_handle = getattr(main_thread, attr)
    green_handle = _make_thread_handle(new_ident)
    setattr(main_thread, attr, green_handle)

    def _shutdown():
        green_handle._set_done()
        _let_joiners_run()
        # The interpreter's shutdown expects the main thread running, with
        # its real handle: threading._shutdown() marks that one done, runs
        # the threading atexit hooks (concurrent.futures stops its workers
        # there), then joins the non-daemon threads through the green
        # _thread_shutdown -- all cooperatively, on this main greenlet.
        setattr(main_thread, attr, real_handle)
        _run_original_shutdown(threading_mod, orig_shutdown)

    patch_item(threading_mod, "_shutdown", _shutdown)


def _let_joiners_run():
    from ._exceptions import LoopExit
    from ._hub import sleep

    try:
        sleep()  # let greenlets joining the main thread see it end
    except LoopExit:
        pass
    except BaseException:  # noqa: B036 - nowhere to propagate at shutdown
        import traceback

        traceback.print_exc()


def _run_original_shutdown(threading_mod, orig_shutdown):
    from ._exceptions import LoopExit

    try:
        orig_shutdown()  # joins non-daemon threads (greenlets): cooperative
    except LoopExit:
        pass
    threading_mod._shutdown = orig_shutdown


def _stop_main_thread_at_shutdown(threading_mod, main_thread, orig_shutdown):
    # Patched from another OS thread, the main thread keeps its OS ident, but
    # threading._shutdown() only stops (and releases the shutdown lock of) the
    # main thread when get_ident() -- now a greenlet's -- matches it: without
    # this the interpreter would wait for that lock forever at exit.
    def _shutdown():
        from ._exceptions import LoopExit

        main_thread._ident = threading_mod.get_ident()
        try:
            orig_shutdown()
        except LoopExit:
            pass
        threading_mod._shutdown = orig_shutdown

    patch_item(threading_mod, "_shutdown", _shutdown)


def _polling_join(thread):
    def join(timeout=None):
        import threading
        from time import monotonic

        from ._hub import sleep

        if threading.current_thread() is thread:
            raise RuntimeError("cannot join current thread")
        deadline = None if timeout is None else monotonic() + timeout
        while thread.is_alive():
            if deadline is not None and monotonic() >= deadline:
                return
            sleep(0.01)

    return join


def _forgiving_delete(thread, threading_mod):
    # A real thread started before patching ends with
    # ``del _active[get_ident()]``, and get_ident() now names a greenlet.
    def _delete():
        active = threading_mod._active
        for key, value in list(active.items()):
            if value is thread:
                active.pop(key, None)

    return _delete


def _fix_existing_locks(real_get_ident, green_get_ident):
    import gc
    import threading

    # concurrent.futures holds this lock across Thread.start() (which now
    # switches greenlets): a native lock would deadlock a second submitter.
    try:
        import concurrent.futures.thread as cf_thread
    except ImportError:  # pragma: no cover
        cf_thread = None
    if cf_thread is not None and hasattr(cf_thread, "_global_shutdown_lock"):
        cf_thread._global_shutdown_lock = threading._allocate_lock()

    # Import locks (and pure-Python RLocks) held right now record the OS
    # thread's ident; from now on the owner is known by the greenlet's.
    me_real = real_get_ident()
    me_green = green_get_ident()
    try:
        from importlib._bootstrap import _ModuleLock
    except ImportError:  # pragma: no cover
        _ModuleLock = None
    py_rlock = getattr(threading, "_PyRLock", None)
    for obj in gc.get_objects():
        if _ModuleLock is not None and isinstance(obj, _ModuleLock):
            if obj.owner == me_real:
                obj.owner = me_green
        elif py_rlock is not None and isinstance(obj, py_rlock):
            if getattr(obj, "_owner", None) == me_real:
                obj._owner = me_green


def _patch_logging(threading_mod):
    import logging

    patch_item(logging, "_lock", threading_mod.RLock())
    for ref in list(logging._handlerList):
        handler = ref() if callable(ref) else ref
        if handler is not None and hasattr(handler, "lock") and handler.lock is not None:
            handler.lock = threading_mod.RLock()


def _warn_direct_thread_refs(warnings_list):
    # Third-party modules that did ``from threading import local`` (or
    # get_ident, Lock...) before patching keep the OS-thread versions.
    originals = saved.get("_thread", {})
    found = set()
    for name in ("get_ident", "allocate_lock", "start_new_thread", "_local"):
        obj = originals.get(name)
        if obj is None:
            continue
        modules, _ = _module_refs(
            obj, exclude=("_thread", "threading", "__main__"), stdlib_too=False
        )
        found.update(m for m in modules if not m.startswith(("greenlet", "_pytest", "pytest")))
    if found:
        _queue_warning(
            "Monkey-patching threading after these modules imported thread functions or "
            "locals by name (they stay per OS thread, NOT per greenlet): %s; patch earlier"
            % (", ".join(sorted(found)),),
            warnings_list,
        )
