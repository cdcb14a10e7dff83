"""greenwheel.events: zope.event's subscribers, gevent's interfaces, plugin entry points."""

import sys

import pytest
import zope.event
from zope.interface import verify

from greenwheel import events


def test_subscribers_and_notify_are_zope_events_own():
    # A gevent plugin that subscribes through zope.event sees greenwheel's events.
    assert events.subscribers is zope.event.subscribers
    assert events.notify is zope.event.notify
    seen = []
    zope.event.subscribers.append(seen.append)
    try:
        event = events.EventLoopBlocked("g", 0.5, ["line"])
        events.notify(event)
    finally:
        zope.event.subscribers.remove(seen.append)
    assert seen == [event]


@pytest.mark.parametrize(
    ("interface", "event"),
    [
        (events.IEventLoopBlocked, events.EventLoopBlocked(None, 0.1, [], hub=None)),
        (events.IMemoryUsageThresholdExceeded, events.MemoryUsageThresholdExceeded(3, 2, ())),
        (events.IMemoryUsageUnderThreshold, events.MemoryUsageUnderThreshold(1, 2, (), 3)),
        (events.IPeriodicMonitorThreadStartedEvent, events.PeriodicMonitorThreadStartedEvent(1)),
        (events.IGeventWillPatchModuleEvent, events.GeventWillPatchModuleEvent("m", 1, 2, [])),
        (events.IGeventDidPatchModuleEvent, events.GeventDidPatchModuleEvent("m", 1, 2)),
        (events.IGeventWillPatchAllEvent, events.GeventWillPatchAllEvent({"socket": True}, {})),
        (
            events.IGeventDidPatchBuiltinModulesEvent,
            events.GeventDidPatchBuiltinModulesEvent({}, {}),
        ),
        (events.IGeventDidPatchAllEvent, events.GeventDidPatchAllEvent({}, {})),
    ],
)
def test_every_event_provides_its_interface(interface, event):
    assert verify.verifyObject(interface, event)
    assert interface.providedBy(event)


def test_will_patch_all_reports_arguments_by_name():
    event = events.GeventWillPatchAllEvent({"socket": True, "thread": False}, {"extra": 1})
    assert event.will_patch_module("socket") and not event.will_patch_module("thread")
    assert event.patch_all_kwargs == {"extra": 1}
    event.patch_all_arguments["socket"] = False  # a copy: the event is unchanged
    assert event.will_patch_module("socket")
    assert issubclass(events.DoNotPatch, BaseException)


def test_entry_points_of_the_event_group_are_called(tmp_path, monkeypatch):
    # An installed plugin: a distribution's metadata on sys.path, whose entry
    # point in gevent's group names a function in a module beside it.
    (tmp_path / "gwplugin.py").write_text(
        "CALLS = []\n\ndef hook(event):\n    CALLS.append(event)\n"
    )
    info = tmp_path / "gwplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gwplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gevent.plugins.monkey.did_patch_all]\ngwplugin = gwplugin:hook\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        event = events.GeventDidPatchAllEvent({}, {})
        events.notify_and_call_entry_points(event)
        assert sys.modules["gwplugin"].CALLS == [event]
        # An event without a plugin group is only notified.
        events.notify_and_call_entry_points(events.EventLoopBlocked(None, 0.1, []))
        assert sys.modules["gwplugin"].CALLS == [event]
    finally:
        sys.modules.pop("gwplugin", None)


def test_plugins_of_the_gevent_distribution_itself_are_not_loaded(tmp_path):
    # gevent's own distribution registers monkey plugins that import the real
    # gevent; with both installed (usual while porting), patching must not
    # load them (greenwheel does their work itself), while any other
    # distribution's plugin in the same group is called.
    import os
    import subprocess

    (tmp_path / "gwprobe.py").write_text(
        "import os\n"
        "def hook(event):\n"
        "    open(os.environ['PROBE_OUT'] + '.' + event.__class__.__name__, 'w').close()\n"
    )
    for dist, name in (("gevent", "gevent-99.0"), ("someplugin", "someplugin-1.0")):
        info = tmp_path / (name + ".dist-info")
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: 1\n" % dist)
        (info / "entry_points.txt").write_text(
            "[gevent.plugins.monkey.will_patch_all]\nprobe = gwprobe:hook\n"
            if dist == "gevent"
            else "[gevent.plugins.monkey.did_patch_all]\nprobe = gwprobe:hook\n"
        )
    out = tmp_path / "called"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PROBE_OUT=str(out))
    code = "from greenwheel import monkey\nmonkey.patch_all()\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    called = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("called."))
    assert called == ["called.GeventDidPatchAllEvent"]  # someplugin's; gevent's was skipped
