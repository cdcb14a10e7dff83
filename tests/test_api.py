"""The public API surface, pinned: adding or dropping a name must be deliberate."""

import types

import greenwheel
import greenwheel.exceptions
import greenwheel.greenlet
import greenwheel.hub
import greenwheel.pool
import greenwheel.timeout


def public_names(module):
    # Submodules show up as package attributes once imported; they are not
    # part of the API pinned here (other modules will be added later).
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


def test_top_level_names():
    assert public_names(greenwheel) == TOP_LEVEL
    assert sorted(greenwheel.__all__) == TOP_LEVEL
    assert isinstance(greenwheel.__version__, str) and greenwheel.__version__


def test_hub_module_names():
    assert public_names(greenwheel.hub) == [
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
    ]
    assert sorted(greenwheel.hub.__all__) == public_names(greenwheel.hub)
    assert greenwheel.hub.signal is greenwheel.signal_handler


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


def test_core_module_names():
    import greenwheel.core

    assert public_names(greenwheel.core) == [
        "EVENTS",
        "READ",
        "WRITE",
        "callback",
        "embeddable_backends",
        "loop",
        "recommended_backends",
        "supported_backends",
    ]
    assert greenwheel.core.loop is type(greenwheel.get_hub().loop)
    assert isinstance(greenwheel.get_hub().loop.run_callback(int), greenwheel.core.callback)
    assert greenwheel.core.supported_backends() == ["epoll"]


def test_greenlet_module_names():
    assert public_names(greenwheel.greenlet) == [
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
    ]
    assert sorted(greenwheel.greenlet.__all__) == public_names(greenwheel.greenlet)


def test_timeout_module_names():
    assert public_names(greenwheel.timeout) == ["Timeout", "with_timeout"]
    assert sorted(greenwheel.timeout.__all__) == ["Timeout", "with_timeout"]


def test_pool_module_names():
    assert public_names(greenwheel.pool) == ["Group", "IMap", "IMapUnordered", "Pool", "PoolFull"]
    assert sorted(greenwheel.pool.__all__) == public_names(greenwheel.pool)


def test_exceptions_module_names():
    assert public_names(greenwheel.exceptions) == [
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
    ]
    assert sorted(greenwheel.exceptions.__all__) == public_names(greenwheel.exceptions)


def test_pywsgi_module_names():
    import greenwheel.pywsgi

    assert public_names(greenwheel.pywsgi) == [
        "Environ",
        "Input",
        "LoggingLogAdapter",
        "MAX_REQUEST_LINE",
        "SecureEnviron",
        "WSGIHandler",
        "WSGISecureEnviron",
        "WSGIServer",
        "format_date_time",
    ]
    assert sorted(greenwheel.pywsgi.__all__) == public_names(greenwheel.pywsgi)


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


def test_monkey_and_threadpool_module_names():
    import greenwheel.monkey
    import greenwheel.threadpool

    assert sorted(greenwheel.monkey.__all__) == [
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
    ]
    assert sorted(greenwheel.threadpool.__all__) == [
        "ThreadPool",
        "ThreadPoolExecutor",
        "ThreadResult",
    ]
    assert greenwheel.get_hub().threadpool.__class__ is greenwheel.threadpool.ThreadPool


def test_util_and_contextvars_module_names():
    import contextvars

    import greenwheel.contextvars
    import greenwheel.util

    assert sorted(greenwheel.util.__all__) == [
        "GreenletTree",
        "assert_switches",
        "clear_stack_frames",
        "format_run_info",
        "print_run_info",
        "wrap_errors",
    ]
    assert sorted(greenwheel.contextvars.__all__) == [
        "Context",
        "ContextVar",
        "Token",
        "copy_context",
    ]
    assert greenwheel.contextvars.ContextVar is contextvars.ContextVar


def test_events_module_names_and_hub_monitoring():
    import greenwheel.events

    assert sorted(greenwheel.events.__all__) == [
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
    ]
    assert public_names(greenwheel.events) == sorted(greenwheel.events.__all__)
    hub = greenwheel.get_hub()
    assert callable(hub.start_periodic_monitoring_thread)
    assert hub.periodic_monitoring_thread is None  # off unless asked for


def test_backdoor_module_names():
    import greenwheel.backdoor
    import greenwheel.server

    assert greenwheel.backdoor.__all__ == ["BackdoorServer"]
    assert issubclass(greenwheel.backdoor.BackdoorServer, greenwheel.server.StreamServer)


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
