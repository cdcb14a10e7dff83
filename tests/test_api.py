"""The public API surface, pinned: adding or dropping a name must be deliberate."""

import importlib
import queue
import sys
import types

import pytest

import greenwheel


def public_names(module):
    # Submodules show up as package attributes once imported; they are not
    # part of the API pinned here.
    return sorted(
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    )


TOP_LEVEL = [
    "Greenlet",
    "GreenletExit",
    "Hub",
    "LinkedCompleted",
    "LinkedExited",
    "LinkedFailed",
    "LinkedKilled",
    "LoopExit",
    "Timeout",
    "config",
    "fork",
    "get_hub",
    "getcurrent",
    "getswitchinterval",
    "idle",
    "iwait",
    "joinall",
    "kill",
    "killall",
    "reinit",
    "setswitchinterval",
    "signal_handler",
    "sleep",
    "spawn",
    "spawn_later",
    "spawn_link",
    "spawn_link_exception",
    "spawn_link_value",
    "spawn_raw",
    "wait",
    "with_timeout",
]

# Every public module with a gevent name: module -> its ``__all__`` (sorted),
# which is also exactly its public attributes (plus EXTRA_PUBLIC).
OWN_MODULES = {
    "greenwheel": TOP_LEVEL,
    "greenwheel.backdoor": ["BackdoorServer"],
    "greenwheel.baseserver": ["BaseServer", "parse_address"],
    "greenwheel.contextvars": ["Context", "ContextVar", "Token", "copy_context"],
    "greenwheel.core": [
        "EVENTS",
        "READ",
        "WRITE",
        "callback",
        "embeddable_backends",
        "loop",
        "recommended_backends",
        "supported_backends",
    ],
    "greenwheel.event": ["AsyncResult", "Event"],
    "greenwheel.events": [
        "DoNotPatch",
        "EventLoopBlocked",
        "GeventDidPatchAllEvent",
        "GeventDidPatchBuiltinModulesEvent",
        "GeventDidPatchEvent",
        "GeventDidPatchModuleEvent",
        "GeventPatchEvent",
        "GeventWillPatchAllEvent",
        "GeventWillPatchEvent",
        "GeventWillPatchModuleEvent",
        "IEventLoopBlocked",
        "IGeventDidPatchAllEvent",
        "IGeventDidPatchBuiltinModulesEvent",
        "IGeventDidPatchEvent",
        "IGeventDidPatchModuleEvent",
        "IGeventPatchEvent",
        "IGeventWillPatchAllEvent",
        "IGeventWillPatchEvent",
        "IGeventWillPatchModuleEvent",
        "IMemoryUsageThresholdExceeded",
        "IMemoryUsageUnderThreshold",
        "IPeriodicMonitorThread",
        "IPeriodicMonitorThreadStartedEvent",
        "MemoryUsageThresholdExceeded",
        "MemoryUsageUnderThreshold",
        "PeriodicMonitorThreadStartedEvent",
        "notify",
        "notify_and_call_entry_points",
        "subscribers",
    ],
    "greenwheel.exceptions": [
        "BlockingSwitchOutError",
        "ConcurrentObjectUseError",
        "HubDestroyed",
        "InvalidSwitchError",
        "InvalidThreadUseError",
        "LinkedCompleted",
        "LinkedExited",
        "LinkedFailed",
        "LinkedKilled",
        "LoopExit",
    ],
    "greenwheel.fileobject": [
        "FileObject",
        "FileObjectBlock",
        "FileObjectClosed",
        "FileObjectPosix",
        "FileObjectThread",
        "GreenFileIO",
    ],
    "greenwheel.greenlet": [
        "Greenlet",
        "GreenletExit",
        "LinkedCompleted",
        "LinkedExited",
        "LinkedFailed",
        "LinkedKilled",
        "getcurrent",
        "joinall",
        "killall",
        "spawn",
        "spawn_later",
        "spawn_link",
        "spawn_link_exception",
        "spawn_link_value",
    ],
    "greenwheel.hub": [
        "GreenletExit",
        "Hub",
        "LoopExit",
        "Waiter",
        "get_hub",
        "get_hub_class",
        "getcurrent",
        "idle",
        "iwait",
        "kill",
        "reinit",
        "set_default_hub_class",
        "set_hub",
        "signal",
        "sleep",
        "spawn_raw",
        "wait",
    ],
    "greenwheel.local": ["all_local_dicts_for_greenlet", "local"],
    "greenwheel.lock": ["BoundedSemaphore", "DummySemaphore", "Lock", "RLock", "Semaphore"],
    "greenwheel.monkey": [
        "MonkeyPatchWarning",
        "get_original",
        "is_anything_patched",
        "is_module_patched",
        "is_object_patched",
        "main",
        "patch_all",
        "patch_builtins",
        "patch_contextvars",
        "patch_dns",
        "patch_module",
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
        "saved",
    ],
    "greenwheel.pool": ["Group", "IMap", "IMapUnordered", "Pool", "PoolFull"],
    "greenwheel.pywsgi": [
        "Environ",
        "Input",
        "LoggingLogAdapter",
        "MAX_REQUEST_LINE",
        "SecureEnviron",
        "WSGIHandler",
        "WSGISecureEnviron",
        "WSGIServer",
        "format_date_time",
    ],
    "greenwheel.resolver": [],
    "greenwheel.resolver.blocking": ["Resolver"],
    "greenwheel.resolver.dnspython": ["Resolver"],
    "greenwheel.resolver.thread": ["Resolver"],
    "greenwheel.server": ["DatagramServer", "StreamServer"],
    "greenwheel.threadpool": ["ThreadPool", "ThreadPoolExecutor", "ThreadResult"],
    "greenwheel.timeout": ["Timeout", "with_timeout"],
    "greenwheel.util": [
        "GreenletTree",
        "assert_switches",
        "clear_stack_frames",
        "format_run_info",
        "print_run_info",
        "wrap_errors",
    ],
}

#: Public attributes not in ``__all__`` (as gevent has them).
EXTRA_PUBLIC = {
    "greenwheel.monkey": ["patch_item", "remove_item"],
    "greenwheel.resolver.dnspython": ["HostsFile"],
}

# The green stand-ins for standard modules: module -> (the standard module,
# the names of its ``__all__`` that are greenwheel's own objects). The rest of
# ``__all__`` is the standard module's own objects, which vary by version.
STAND_IN_MODULES = {
    "greenwheel.builtins": ("builtins", []),
    "greenwheel.os": (
        "os",
        [
            "fork",
            "fork_and_watch",
            "fork_gevent",
            "forkpty",
            "forkpty_and_watch",
            "forkpty_gevent",
            "make_nonblocking",
            "nb_read",
            "nb_write",
            "tp_read",
            "tp_write",
            "waitpid",
        ],
    ),
    "greenwheel.queue": (
        "queue",
        ["Channel", "JoinableQueue", "LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]
        + ["UnboundQueue"]
        # queue.ShutDown is new in 3.13: before that greenwheel has its own.
        + ([] if hasattr(queue, "ShutDown") else ["ShutDown"]),
    ),
    "greenwheel.select": ("select", ["poll", "select"]),
    "greenwheel.selectors": ("selectors", ["DefaultSelector", "GeventSelector"]),
    "greenwheel.signal": ("signal", ["getsignal", "signal"]),
    "greenwheel.socket": (
        "socket",
        [
            "SocketType",
            "cancel_wait",
            "cancel_wait_ex",
            "create_connection",
            "create_server",
            "fromfd",
            "getaddrinfo",
            "getfqdn",
            "gethostbyaddr",
            "gethostbyname",
            "gethostbyname_ex",
            "getnameinfo",
            "socket",
            "socketpair",
            "wait",
            "wait_read",
            "wait_readwrite",
            "wait_write",
        ],
    ),
    "greenwheel.ssl": (
        "ssl",
        [
            "SSLContext",
            "SSLSocket",
            "create_connection",
            "create_default_context",
            "get_server_certificate",
            "wrap_socket",
        ],
    ),
    "greenwheel.subprocess": (
        "subprocess",
        [
            "FileObject",
            "Popen",
            "call",
            "check_call",
            "check_output",
            "getoutput",
            "getstatusoutput",
            "run",
        ],
    ),
    "greenwheel.thread": (
        "_thread",
        [
            "LockType",
            "allocate",
            "allocate_lock",
            "exit",
            "exit_thread",
            "get_ident",
            "stack_size",
            "start_new",
            "start_new_thread",
        ]
        # 3.13's thread handles: see greenwheel.thread.
        + (["start_joinable_thread"] if sys.version_info >= (3, 13) else []),
    ),
    # Patches only private names; exports nothing (as gevent.threading).
    "greenwheel.threading": ("threading", []),
    "greenwheel.time": ("time", ["sleep"]),
}

API = {
    **{name: ("own", names) for name, names in OWN_MODULES.items()},
    **{name: ("stand-in", spec) for name, spec in STAND_IN_MODULES.items()},
}


@pytest.mark.parametrize("name", sorted(API))
def test_public_names_of_every_gevent_named_module(name):
    kind, expected = API[name]
    if name == "greenwheel.resolver.dnspython":
        pytest.importorskip("dns")
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "duplicates in %s.__all__" % name
    if kind == "own":
        assert sorted(exported) == expected
        assert public_names(module) == sorted(expected + EXTRA_PUBLIC.get(name, []))
        return
    std_name, own = expected
    std = importlib.import_module(std_name)
    mine = sorted(
        n for n in exported if not (hasattr(std, n) and getattr(module, n) is getattr(std, n))
    )
    assert mine == sorted(own)
    # Everything greenwheel replaces is listed as such (gevent's convention).
    assert set(own) <= set(module.__implements__) | set(getattr(module, "__extensions__", ()))


def test_every_public_gevent_named_module_is_in_the_table():
    # A new public module must join the table (or be named here as not gevent's).
    import pathlib

    package = pathlib.Path(greenwheel.__file__).parent
    found = {"greenwheel"}
    for path in package.iterdir():
        name = path.stem if path.suffix == ".py" else path.name
        if not name.startswith("_") and (path.suffix == ".py" or (path / "__init__.py").exists()):
            found.add("greenwheel." + name)
    for path in (package / "resolver").glob("*.py"):
        if not path.stem.startswith("_"):
            found.add("greenwheel.resolver." + path.stem)
    not_gevent_names = {"greenwheel.as_gevent", "greenwheel.asyncio", "greenwheel.gunicorn"}
    assert found - not_gevent_names == set(API)


def test_version_and_module_specifics():
    import greenwheel.backdoor
    import greenwheel.hub
    import greenwheel.server

    assert isinstance(greenwheel.__version__, str) and greenwheel.__version__
    assert greenwheel.hub.signal is greenwheel.signal_handler
    assert greenwheel.backdoor.__all__ == ["BackdoorServer"]
    assert issubclass(greenwheel.backdoor.BackdoorServer, greenwheel.server.StreamServer)
    import contextvars

    import greenwheel.contextvars

    assert greenwheel.contextvars.ContextVar is contextvars.ContextVar


def test_core_module_objects():
    import greenwheel.core

    assert greenwheel.core.loop is type(greenwheel.get_hub().loop)
    assert isinstance(greenwheel.get_hub().loop.run_callback(int), greenwheel.core.callback)
    assert greenwheel.core.supported_backends() == ["epoll"]


def test_threadpool_and_events_hub_attributes():
    import greenwheel.threadpool

    hub = greenwheel.get_hub()
    assert hub.threadpool.__class__ is greenwheel.threadpool.ThreadPool
    assert callable(hub.start_periodic_monitoring_thread)
    assert hub.periodic_monitoring_thread is None  # off unless asked for


def test_import_binds_the_submodules_import_gevent_binds():
    # 'import gevent' binds these; ported code uses gevent.hub.X without importing it.
    import subprocess
    import sys

    code = (
        "import greenwheel, types\n"
        "names = ['event', 'exceptions', 'greenlet', 'hub', 'os', 'timeout']\n"
        "print(all(isinstance(getattr(greenwheel, n, None), types.ModuleType) for n in names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_stable_homes_for_building_blocks():
    # event/queue/lock/socket build on these; they must stay where they are.
    from greenwheel._hub import Waiter, get_hub, getcurrent, sleep  # noqa: F401
    from greenwheel._timeout import Timeout

    assert Timeout is greenwheel.Timeout
    assert getcurrent is greenwheel.getcurrent
    assert get_hub is greenwheel.get_hub


def test_same_objects_everywhere():
    assert greenwheel.greenlet.Greenlet is greenwheel.Greenlet
    assert greenwheel.hub.sleep is greenwheel.sleep
    assert greenwheel.timeout.Timeout is greenwheel.Timeout
    assert greenwheel.exceptions.LoopExit is greenwheel.LoopExit
    import greenlet

    assert greenwheel.GreenletExit is greenlet.GreenletExit
    assert greenwheel.getcurrent is greenlet.getcurrent
    assert issubclass(greenwheel.Greenlet, greenlet.greenlet)
    assert issubclass(greenwheel.Hub, greenlet.greenlet)
    assert issubclass(greenwheel.Timeout, BaseException)
    assert not issubclass(greenwheel.Timeout, Exception)


def test_link_exception_hierarchy():
    g = greenwheel
    for cls in (g.LinkedCompleted, g.LinkedFailed, g.LinkedKilled):
        assert issubclass(cls, g.LinkedExited)
    assert issubclass(g.LinkedExited, Exception)
    # gevent.greenlet 0.13: a kill is a successful completion ...
    assert issubclass(g.LinkedKilled, g.LinkedCompleted)
    # ... gevent.proc 0.13: it is a failure; both `except` clauses work.
    assert issubclass(g.LinkedKilled, g.LinkedFailed)
    assert issubclass(g.LoopExit, Exception)


def test_green_module_mapping_matches_monkey_patching():
    # gevent's _patcher.MAPPING: green module -> the standard module it stands in for,
    # under greenwheel's names and gevent's (for code reaching it through the alias).
    from greenwheel._patcher import MAPPING
    from greenwheel.monkey import _SOURCES

    for stdlib_name, green_name in _SOURCES.items():
        assert MAPPING[green_name] == stdlib_name
        assert MAPPING["gevent" + green_name[len("greenwheel") :]] == stdlib_name
    assert MAPPING["greenwheel.local"] == "_threading_local"
    assert MAPPING["gevent.socket"] == "socket"


def test_green_modules_cover_their_standard_modules():
    # What gevent's own module checks (test__all__) hold greenwheel to: __all__
    # without duplicates, every public name of the standard module reachable,
    # and names copied from it listed as imports, not extensions.
    import selectors
    import socket
    import ssl
    import types

    import greenwheel.selectors
    import greenwheel.socket
    import greenwheel.ssl

    for green, std in (
        (greenwheel.socket, socket),
        (greenwheel.selectors, selectors),
        (greenwheel.ssl, ssl),
    ):
        assert len(green.__all__) == len(set(green.__all__)), green
        for name in dir(std):
            value = getattr(std, name)
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            assert hasattr(green, name), (green.__name__, name)
        for name in getattr(green, "__extensions__", ()):
            assert not hasattr(std, name), (green.__name__, name)
    assert greenwheel.ssl.socket is greenwheel.socket.socket
    assert "EBADF" in greenwheel.socket.__imports__


def test_builtins_module_mirrors_the_standard_builtins():
    import builtins

    import greenwheel.builtins

    assert greenwheel.builtins.__all__ == [] and greenwheel.builtins.__implements__ == []
    assert greenwheel.builtins.__import__ is builtins.__import__
    for name in greenwheel.builtins.__imports__:
        assert getattr(greenwheel.builtins, name) is getattr(builtins, name)
    assert "len" in greenwheel.builtins.__imports__
