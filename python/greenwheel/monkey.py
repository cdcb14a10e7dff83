"""Make the standard library cooperative (gevent.monkey).

Patch as early as possible, in the main module, before anything else is
imported, on the main thread, while the process is single-threaded::

    from greenwheel import monkey
    monkey.patch_all()

After :func:`patch_all`, ``time.sleep`` yields to other greenlets,
``threading.Thread`` runs its target in a greenlet (``current_thread``,
``get_ident``, ``local``, ``Lock``, ``RLock``, ``Condition``, ``Event``,
``Semaphore``, ``Timer`` and ``join`` cooperate; ``main_thread()`` is still
the main thread), :mod:`queue` queues block only the greenlet, and
:mod:`socket`, :mod:`select`, :mod:`selectors`, :mod:`ssl`,
:mod:`subprocess`, ``os.fork``/``os.waitpid`` and ``signal.signal`` (for
``SIGCHLD``) are the greenwheel versions.  Unmodified blocking libraries
(``urllib``, ``requests``, ``redis``...) then run concurrently in greenlets.

Querying: :func:`is_module_patched`, :func:`is_object_patched`,
:func:`get_original` (the standard library's object even after patching),
and the :data:`saved` mapping ``{module name: {attribute: original}}``.

Run a script patched, like ``python script.py args``::

    python -m greenwheel.monkey [--no-MODULE | --MODULE]... [--module] script.py args

Patching that comes too late (``ssl`` objects already imported by name,
other OS threads already running...) cannot be fully fixed; it emits a
:class:`MonkeyPatchWarning` saying what stays unpatched.
"""

# Keep imports here minimal and local: this module runs before the program's
# own imports, and anything imported now sees the unpatched world.
# (_typecheck imports nothing: annotations name typing's types only for the checker.)
import sys

from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any

# The primitives and the record of what was patched live one layer down,
# shared with _monkey_threads; these names are monkey's public API too
# (patch_item and remove_item are gevent.monkey's, though not in its __all__:
# unused here, hence the noqa).
from ._monkey_base import (  # noqa: F401
    MonkeyPatchWarning,
    _import,
    _module_refs,
    _process_warnings,
    _queue_warning,
    get_original,
    is_anything_patched,
    is_module_patched,
    is_object_patched,
    patch_item,
    patch_module,
    remove_item,
    saved,
)

__all__ = [
    "patch_all",
    "patch_builtins",
    "patch_dns",
    "patch_os",
    "patch_queue",
    "patch_select",
    "patch_selectors",
    "patch_signal",
    "patch_socket",
    "patch_ssl",
    "patch_subprocess",
    "patch_sys",
    "patch_thread",
    "patch_time",
    "patch_contextvars",
    "get_original",
    "is_anything_patched",
    "is_module_patched",
    "is_object_patched",
    "patch_module",
    "saved",
    "main",
    "MonkeyPatchWarning",
]


# The source module (in greenwheel) for each standard module name.
_SOURCES = {
    "_thread": "greenwheel.thread",
    "threading": "greenwheel.threading",
    "time": "greenwheel.time",
    "socket": "greenwheel.socket",
    "select": "greenwheel.select",
    "selectors": "greenwheel.selectors",
    "ssl": "greenwheel.ssl",
    "os": "greenwheel.os",
    "signal": "greenwheel.signal",
    "subprocess": "greenwheel.subprocess",
    "queue": "greenwheel.queue",
}

_DNS_NAMES = [
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
]


def _patch_module(name, items=None):
    """Patch standard module *name* from its greenwheel source, with events.

    Subscribers (and gevent's plugin entry points) hear a
    ``GeventWillPatchModuleEvent`` first; one that raises
    :class:`~greenwheel.events.DoNotPatch` vetoes the patch, which then
    propagates DoNotPatch to the ``patch_*`` function (see
    :func:`_vetoable`).  A ``GeventDidPatchModuleEvent`` follows the patch.
    """
    source = _import(_SOURCES[name])
    target = _import(getattr(source, "__target__", name))
    if items is None:
        items = getattr(source, "__implements__", None)
        if items is None:
            raise AttributeError("%r has no __implements__" % (source,))
    from . import _events

    _notify(_events.GeventWillPatchModuleEvent(target.__name__, source, target, list(items)))
    patch_module(target, source, items)
    _notify(_events.GeventDidPatchModuleEvent(target.__name__, source, target))
    return source, target


def _notify(event):
    from ._events import notify_and_call_entry_points

    notify_and_call_entry_points(event)


def _vetoable(func):
    # A patch_* function whose module patch a subscriber vetoed returns
    # False instead of raising DoNotPatch at its caller.
    import functools

    @functools.wraps(func)
    def patch(*args, **kwargs):
        from ._events import DoNotPatch

        try:
            return func(*args, **kwargs)
        except DoNotPatch:
            return False

    return patch


# --- the patch functions --------------------------------------------------------------------------


@_vetoable
def patch_time():
    """Replace :func:`time.sleep` with :func:`greenwheel.sleep`."""
    _patch_module("time")


@_vetoable
def patch_socket(dns=True, aggressive=True):
    """Replace the socket type and its helpers with greenwheel's cooperative ones.

    With *dns* (the default) the name-resolution functions are replaced as
    well (they then run in the hub's thread pool).
    """
    source = _import("greenwheel.socket")
    items = list(source.__implements__)
    if not dns:
        items = [name for name in items if name not in _DNS_NAMES]
    _patch_module("socket", items)


@_vetoable
def patch_dns():
    """Replace only the name-resolution functions of :mod:`socket`."""
    _patch_module("socket", list(_DNS_NAMES))


@_vetoable
def patch_select(aggressive=True):
    """Replace :func:`select.select` and :class:`select.poll`.

    With *aggressive* (the default) ``epoll``, ``kqueue``, ``kevent`` and
    ``devpoll``, which would block, are removed from :mod:`select`.
    """
    _, target = _patch_module("select")
    if aggressive:
        for name in ("epoll", "kqueue", "kevent", "devpoll"):
            remove_item(target, name)


@_vetoable
def patch_selectors(aggressive=True):
    """Make :class:`selectors.DefaultSelector` greenwheel's cooperative selector.

    With *aggressive* the blocking kernel selectors (``EpollSelector``...)
    are removed from :mod:`selectors`.
    """
    _, target = _patch_module("selectors")
    if aggressive:
        for name in ("EpollSelector", "KqueueSelector", "DevpollSelector"):
            remove_item(target, name)
    _patch_selector_classes(target)


def _patch_selector_classes(selectors_mod):
    # The standard SelectSelector and PollSelector captured select.select and
    # select.poll as class attributes when selectors was imported (usually
    # long before patching: platform imports it), so replacing the functions
    # in select does not reach them. socketserver, multiprocessing.connection
    # and friends use these classes directly.
    from ._selectors import _cooperative_poll, _select_method

    select_cls = getattr(selectors_mod, "SelectSelector", None)
    if select_cls is not None and "_select" in vars(select_cls):
        if not getattr(select_cls._select, "_gevent_monkey", False):
            _saved_class_attrs.setdefault((select_cls, "_select"), vars(select_cls)["_select"])
            select_cls._select = _select_method
    poll_cls = getattr(selectors_mod, "PollSelector", None)
    if poll_cls is not None and "_selector_cls" in vars(poll_cls):
        if poll_cls._selector_cls is not _cooperative_poll:
            _saved_class_attrs.setdefault((poll_cls, "_selector_cls"), poll_cls._selector_cls)
            poll_cls._selector_cls = _cooperative_poll


#: ``{(class, attribute): original}`` for class attributes patched in place.
_saved_class_attrs = {}  # type: dict[tuple[type, str], object]


@_vetoable
def patch_ssl(_warnings=None, _first_time=True):
    """Replace :class:`ssl.SSLContext`, ``SSLSocket`` and the wrapping helpers.

    Call it before anything imports :mod:`ssl`: objects imported by name
    earlier (``from ssl import SSLContext``) and subclasses of the original
    classes stay blocking, and a :class:`MonkeyPatchWarning` names them.
    """
    already = "ssl" in sys.modules and not is_module_patched("ssl")
    original_context = sys.modules["ssl"].SSLContext if already else None
    _patch_module("ssl")
    if already and _first_time:
        modules, subclasses = _module_refs(original_context, exclude=("ssl",))
        if modules or subclasses:
            message = (
                "Monkey-patching ssl after ssl has already been imported may lead to "
                "blocking I/O or errors: patch earlier. "
            )
            if modules:
                # The two headings are worded as gevent's, which tools and
                # tests look for.
                message += (
                    "Modules that had direct imports (NOT patched) of ssl.SSLContext: %s. "
                    % (", ".join(modules),)
                )
            if subclasses:
                message += "Subclasses (NOT patched) of ssl.SSLContext: %s." % (
                    ", ".join(subclasses)
                )
            _queue_warning(message.strip(), _warnings)


@_vetoable
def patch_os():
    """Replace ``os.fork`` (and ``forkpty``) with versions that re-initialise the
    hub in the child, and ``os.waitpid`` with a cooperative one."""
    _patch_module("os")


@_vetoable
def patch_signal():
    """Replace :func:`signal.signal` / :func:`signal.getsignal` so that a
    ``SIGCHLD`` handler coexists with greenwheel's child watching."""
    _patch_module("signal")


@_vetoable
def patch_subprocess():
    """Replace :class:`subprocess.Popen` and its helpers with the cooperative ones."""
    _patch_module("subprocess")


@_vetoable
def patch_queue():
    """Replace ``queue.SimpleQueue``, ``Queue``, ``LifoQueue`` and ``PriorityQueue``."""
    _patch_module("queue", ["SimpleQueue", "Queue", "LifoQueue", "PriorityQueue"])


def patch_sys(stdin=True, stdout=True, stderr=True):
    """Does nothing (as in gevent on Python 3): the standard streams stay as they are."""


def patch_builtins():
    """Does nothing on Python 3 (imports are already greenlet-safe)."""


def patch_contextvars():
    """Does nothing: greenlet switches context variables with each greenlet natively."""


# --- threads -----------------------------------------------------------------------------------


def patch_thread(
    threading: bool = True,
    _threading_local: bool = True,
    Event: bool = True,
    logging: bool = True,
    existing_locks: bool = True,
    _warnings: "list[str] | None" = None,
) -> None:
    """Make :mod:`_thread` and :mod:`threading` greenlet based.

    ``threading.Thread(...).start()`` then spawns a greenlet; locks,
    conditions, events, semaphores, ``threading.local`` and ``join()``
    cooperate, and ``threading.main_thread()`` stays the main thread (the
    main greenlet).  *Event* also installs :class:`greenwheel.event.Event`
    as ``threading.Event``; *logging* replaces the locks of an already
    imported :mod:`logging`; *existing_locks* fixes locks already held
    (import locks) and the lock ``concurrent.futures`` takes around thread
    starts.  Threads already running keep running as OS threads (their
    ``join()`` polls cooperatively); a :class:`MonkeyPatchWarning` says so.
    """
    from . import _monkey_threads

    _monkey_threads.patch_thread(
        threading=threading,
        _threading_local=_threading_local,
        Event=Event,
        logging=logging,
        existing_locks=existing_locks,
        _warnings=_warnings,
    )


# --- patch_all -------------------------------------------------------------------------------------


def _check_repatching(settings, warnings_list):
    # Kept in ``saved`` under gevent's key, where code written for gevent
    # (its test suite among it) looks for the settings patch_all has applied.
    key = "_gevent_saved_patch_all_module_settings"
    current = saved.setdefault(key, {})
    first_time = not current
    if not first_time and current != settings:
        _queue_warning(
            "Patching more than once will result in the union of all True parameters being patched",
            warnings_list,
        )
    to_patch = {}
    for name, value in settings.items():
        if name not in current:
            to_patch[name] = current[name] = value
        elif value and not current[name]:
            to_patch[name] = current[name] = True
    return first_time, to_patch


def patch_all(
    socket: bool = True,
    dns: bool = True,
    time: bool = True,
    select: bool = True,
    thread: bool = True,
    os: bool = True,
    ssl: bool = True,
    subprocess: bool = True,
    sys: bool = False,
    aggressive: bool = True,
    Event: bool = True,
    builtins: bool = True,
    signal: bool = True,
    queue: bool = True,
    contextvars: bool = True,
    **kwargs: object,
) -> "bool | None":
    """Apply every default patch (each argument enables one ``patch_*`` function).

    Calling it again only adds patches (the union of the true arguments),
    with a warning if the arguments differ.  Returns True if anything was
    patched, None if there was nothing left to do, False if a subscriber
    vetoed the whole patch.

    Announces gevent's patch events (:mod:`greenwheel.events`) to the
    subscribers and to gevent's ``gevent.plugins.monkey.*`` entry points:
    ``GeventWillPatchAllEvent`` (raise ``DoNotPatch`` to veto), then for each
    module ``GeventWillPatchModuleEvent`` (vetoable) and
    ``GeventDidPatchModuleEvent``, then ``GeventDidPatchBuiltinModulesEvent``
    and ``GeventDidPatchAllEvent``; *kwargs* are handed to them.
    """
    settings = dict(
        socket=socket,
        dns=dns,
        time=time,
        select=select,
        thread=thread,
        os=os,
        ssl=ssl,
        subprocess=subprocess,
        sys=sys,
        aggressive=aggressive,
        Event=Event,
        builtins=builtins,
        signal=signal,
        queue=queue,
        contextvars=contextvars,
    )
    warnings_list = []  # type: list[str]
    first_time, todo = _check_repatching(settings, warnings_list)
    if not todo:
        _process_warnings(warnings_list)
        return None
    enabled = {name: todo.get(name, False) for name in settings}
    from . import _events

    # What the events report: which modules this call patches, and the
    # options (dns, aggressive, Event) as given.
    arguments = {
        name: settings[name] if name in ("dns", "aggressive", "Event") else enabled[name]
        for name in settings
    }
    try:
        _notify(_events.GeventWillPatchAllEvent(arguments, kwargs))
    except _events.DoNotPatch:
        _process_warnings(warnings_list)
        return False
    aggressive = settings["aggressive"]
    # The order matters: thread before time (threading must see the real
    # sleep while patching), and os with signal.
    if enabled["os"]:
        patch_os()
    if enabled["thread"]:
        patch_thread(Event=settings["Event"], _warnings=warnings_list)
    if enabled["time"]:
        patch_time()
    if enabled["sys"]:
        patch_sys()
    if enabled["socket"]:
        patch_socket(dns=settings["dns"], aggressive=aggressive)
    elif enabled["dns"] and settings["dns"] and is_module_patched("socket"):
        patch_dns()
    if enabled["select"]:
        patch_select(aggressive=aggressive)
        patch_selectors(aggressive=aggressive)
    if enabled["ssl"]:
        patch_ssl(_warnings=warnings_list, _first_time=first_time)
    if enabled["subprocess"]:
        patch_subprocess()
    if enabled["builtins"]:
        patch_builtins()
    if enabled["signal"]:
        if not settings["os"]:
            _queue_warning(
                "Patching signal but not os: SIGCHLD handlers and os.waitpid may not "
                "cooperate with greenwheel.subprocess",
                warnings_list,
            )
        patch_signal()
    if enabled["queue"]:
        patch_queue()
    if enabled["contextvars"]:
        patch_contextvars()
    _notify(_events.GeventDidPatchBuiltinModulesEvent(arguments, kwargs))
    _notify(_events.GeventDidPatchAllEvent(arguments, kwargs))
    _process_warnings(warnings_list)
    return True


# --- python -m greenwheel.monkey -----------------------------------------------------------------

_USAGE = """\
greenwheel.monkey - run a script or module with the standard library patched.

USAGE: python -m greenwheel.monkey [MONKEY OPTIONS] [--module] (script|module) [ARGS...]

Without MONKEY OPTIONS everything is patched as by patch_all().  --no-NAME
leaves NAME unpatched (e.g. --no-thread); --NAME patches only the NAMEs given.
--module runs a module (like python -m) instead of a script.  --verbose prints
what is patched.

MONKEY OPTIONS: --verbose, %s"""


def _patch_all_arg_names():
    import inspect

    return [
        name
        for name, param in inspect.signature(patch_all).parameters.items()
        if param.kind is param.POSITIONAL_OR_KEYWORD
    ]


def main(argv: "list[str] | None" = None) -> "dict[str, Any] | None":
    """Entry point of ``python -m greenwheel.monkey``."""
    import runpy

    names = _patch_all_arg_names()
    modules = [name for name in names if "patch_" + name in globals()]
    usage = _USAGE % ", ".join("--[no-]%s" % name for name in modules)
    args = {}
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    run_module = False
    while argv and argv[0].startswith("--"):
        option = argv.pop(0)[2:]
        if option == "":
            break
        if option == "verbose":
            verbose = True
        elif option == "module":
            run_module = True
        elif option.startswith("no-") and option[3:] in names:
            args[option[3:]] = False
        elif option in names:
            args[option] = True
            if option in modules:
                for module in modules:
                    args.setdefault(module, False)
        else:
            sys.exit(usage + "\n\nCannot patch %r" % (option,))
    if verbose:
        print("greenwheel.monkey.patch_all(%s)" % ", ".join("%s=%s" % kv for kv in args.items()))
    if not argv:
        print(usage)
        return None
    # This module must be the one registered as greenwheel.monkey, whatever
    # name it runs under, or get_original() would see another `saved`.
    sys.modules["greenwheel.monkey"] = sys.modules[__name__]
    patch_all(**args)
    sys.argv[:] = argv
    if run_module:
        return runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    # As ``python script.py`` would: the script's directory comes first.
    import os

    if os.path.isfile(argv[0]):
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    return runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    # Run as ``python -m greenwheel.monkey``: hand over to the properly
    # imported module so there is a single ``saved`` mapping.
    from greenwheel import monkey as _monkey

    _monkey.main()
