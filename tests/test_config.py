"""greenwheel.config: gevent's settings object, for what applies; typos are errors."""

import os
import threading
import warnings

import pytest

import greenwheel as gw
from greenwheel import config


@pytest.fixture(autouse=True)
def restore_config(monkeypatch):
    for name in (
        "MONITOR_THREAD_ENABLE",
        "MAX_BLOCKING_TIME",
        "MONITOR_PRINT_BLOCKING_REPORTS",
        "TRACK_GREENLET_TREE",
        "RESOLVER",
    ):
        monkeypatch.delenv("GEVENT_" + name, raising=False)
        monkeypatch.delenv("GREENWHEEL_" + name, raising=False)
    saved = dict(config._values)
    yield
    config._values.clear()
    config._values.update(saved)
    # Assigned through the config, so every module's copy (_hub's and
    # _greenlet's, kept by config.on_change) follows the restored value.
    config.track_greenlet_tree = config.track_greenlet_tree


def test_defaults_are_gevents():
    assert config.monitor_thread is False
    assert config.max_blocking_time == 0.1
    assert config.print_blocking_reports is True
    assert config.track_greenlet_tree is True
    assert config.max_memory_usage is None and config.memory_monitor_period == 5.0
    from greenwheel.resolver import thread

    assert config.resolver is thread.Resolver  # gevent gives the class, not the name
    effective = [
        "max_blocking_time",
        "max_memory_usage",
        "memory_monitor_period",
        "monitor_thread",
        "print_blocking_reports",
        "resolver",
        "resolver_nameservers",
        "resolver_timeout",
        "track_greenlet_tree",
    ]
    assert [name for name, what in config.settings.items() if "no effect" not in what] == sorted(
        effective, key=list(config.settings).index
    )
    assert sorted(config.settings) == dir(config)  # as gevent's: the settings, nothing else
    assert "loop" in dir(config) and "monitor_thread" in dir(config)
    assert "max_blocking_time=0.1" in repr(config)


def test_the_environment_gives_values_until_code_assigns(monkeypatch):
    monkeypatch.setenv("GEVENT_MAX_BLOCKING_TIME", "0.25")
    monkeypatch.setenv("GEVENT_MONITOR_THREAD_ENABLE", "on")
    assert config.max_blocking_time == 0.25 and config.monitor_thread is True
    monkeypatch.setenv("GREENWHEEL_MAX_BLOCKING_TIME", "0.5")  # our prefix wins
    assert config.max_blocking_time == 0.5
    config.max_blocking_time = "2"  # parsed like the environment
    assert config.max_blocking_time == 2.0
    monkeypatch.setenv("GEVENT_MONITOR_PRINT_BLOCKING_REPORTS", "maybe")
    with pytest.raises(ValueError, match="GEVENT_MONITOR_PRINT_BLOCKING_REPORTS: not a boolean"):
        _ = config.print_blocking_reports


def test_memory_settings_parse_like_gevents(monkeypatch):
    monkeypatch.setenv("GEVENT_MONITOR_MEMORY_MAX", "1048576")
    assert config.max_memory_usage == 1048576
    config.max_memory_usage = None
    assert config.max_memory_usage is None
    for bad in (0, -5, "lots"):
        with pytest.raises(ValueError, match="config.max_memory_usage"):
            config.max_memory_usage = bad
    config.memory_monitor_period = "2"
    assert config.memory_monitor_period == 2.0


def test_resolver_settings_parse_like_gevents(monkeypatch):
    monkeypatch.setenv("GEVENT_RESOLVER_NAMESERVERS", "10.0.0.1, 10.0.0.2")
    assert config.resolver_nameservers == ["10.0.0.1", "10.0.0.2"]
    config.resolver_nameservers = ["192.0.2.53"]
    assert config.resolver_nameservers == ["192.0.2.53"]
    monkeypatch.setenv("GEVENT_RESOLVER_TIMEOUT", "2.5")
    assert config.resolver_timeout == 2.5
    with pytest.raises(ValueError, match="config.resolver_timeout"):
        config.resolver_timeout = -1
    assert config.resolver_nameservers is not None and config.resolver_timeout == 2.5


def test_bad_values_and_unknown_names_raise():
    for bad in (0, -1, float("nan"), "soon", None):
        with pytest.raises(ValueError, match="config.max_blocking_time"):
            config.max_blocking_time = bad
    with pytest.raises(ValueError):
        config.monitor_thread = "perhaps"
    with pytest.raises(AttributeError, match="no setting 'monitor_threads'"):
        config.monitor_threads = True
    with pytest.raises(AttributeError, match="no setting 'nope'"):
        _ = config.nope
    config.set("monitor_thread", "yes")
    assert config.monitor_thread is True


def test_gevents_machinery_settings_are_accepted_with_a_warning():
    from greenwheel.core import loop

    assert config.loop is loop  # as gevent's: the loop class
    with pytest.warns(RuntimeWarning, match="config.loop has no effect"):
        config.loop = "libuv"
    assert config.loop == "libuv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.monitor_thread = False  # a real setting: no warning


def test_track_greenlet_tree_off_records_nothing():
    config.track_greenlet_tree = False
    glet = gw.spawn(lambda: None)
    glet.join()
    assert glet.spawning_greenlet is None and glet.spawn_tree_locals is None
    config.track_greenlet_tree = True
    glet = gw.spawn(lambda: None)
    glet.join()
    assert glet.spawning_greenlet() is gw.getcurrent()
    assert glet.spawn_tree_locals == {}


def test_monitor_thread_setting_starts_a_monitor_for_new_hubs():
    config.monitor_thread = True
    config.max_blocking_time = 0.3
    out = {}

    def in_thread():
        gw.sleep(0)  # the hub starts here
        hub = gw.get_hub()
        monitor = hub.periodic_monitoring_thread
        out["monitor"] = monitor is not None and monitor.is_alive()
        out["max"] = monitor.max_blocking_time if monitor else None
        hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert out == {"monitor": True, "max": 0.3}


def test_resolver_setting_takes_short_names_dotted_paths_and_lists(monkeypatch):
    from greenwheel import _config
    from greenwheel.resolver import blocking, thread

    monkeypatch.delenv("GEVENT_RESOLVER", raising=False)
    monkeypatch.delenv("GREENWHEEL_RESOLVER", raising=False)
    assert _config.Resolver().get() is thread.Resolver
    setting = _config.Resolver()
    setting.set("greenwheel.resolver.blocking.Resolver")
    assert setting.get() is blocking.Resolver
    # gevent's comma list from the environment: the first that imports wins.
    monkeypatch.setenv("GEVENT_RESOLVER", "nosuch,also.not.there,block,thread")
    setting = _config.Resolver()
    assert setting.get() is blocking.Resolver
    monkeypatch.setenv("GEVENT_RESOLVER", "thread")
    assert setting.get() is blocking.Resolver  # read once, as in gevent
    assert _config.Resolver().get() is thread.Resolver


def test_importable_setting_errors_are_clear():
    from greenwheel import _config

    setting = _config.ImportableSetting()
    with pytest.raises(ImportError, match="Cannot import from empty list"):
        setting._import_one_of([])
    with pytest.raises(ImportError, match="Cannot import 'some/dir/pkg.mod'"):
        setting._import_one("some/dir/pkg.mod")
    with pytest.raises(ImportError, match="Cannot import 'nothing' from 'os'"):
        setting._import_one("os.nothing")
    assert setting._import_one("os.path.join") is os.path.join
    options = _config.Resolver().get_options()
    assert set(options) == {"thread", "block", "dnspython"}
    with pytest.raises(ValueError, match="not a valid value"):
        _config.validate_invalid(1)
