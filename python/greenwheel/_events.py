"""The events greenwheel publishes, their interfaces, and the subscriber list.

Ground rules:
- The subscriber list and :func:`notify` are ``zope.event``'s own objects, as
  in gevent: a subscriber registered through ``zope.event.subscribers`` (by a
  gevent plugin, say) sees greenwheel's events, and the other way round.
- Each event class declares a ``zope.interface`` interface with gevent's
  name and attributes, so code that dispatches on interfaces
  (``IEventLoopBlocked.providedBy(event)``) works unchanged.
- :func:`notify_and_call_entry_points` also calls the setuptools entry points
  registered under the event's ``ENTRY_POINT_NAME`` (gevent's plugin groups,
  such as ``gevent.plugins.monkey.will_patch_all``), so an installed plugin
  runs without being imported by the application.
"""

from __future__ import annotations

import sys

from zope.event import notify, subscribers
from zope.interface import Attribute, Interface, implementer

from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = [
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


def notify_and_call_entry_points(event):
    """:func:`notify` *event*, then call every entry point of its plugin group.

    The group is ``event.ENTRY_POINT_NAME``; each entry point is loaded and
    called with the event. A plugin that raises stops the rest, as a
    subscriber does.
    """
    notify(event)
    group = getattr(event, "ENTRY_POINT_NAME", None)
    if group:
        for entry in _plugins(group):
            entry.load()(event)


#: (sys.path when read, {group: [entry points]}): scanning the installed
#: distributions costs milliseconds and patch_all announces some thirty
#: events, so the scan is kept until sys.path changes.
_plugin_cache: tuple[list[str] | None, dict[str, list[Any]]] = (None, {})


def _plugins(group):
    global _plugin_cache
    path = tuple(sys.path)
    cached_path, found = _plugin_cache
    if cached_path != path:
        from importlib.metadata import distributions

        found = {}
        seen = set()
        for dist in distributions():
            # gevent's own plugins do, inside gevent, what greenwheel does
            # itself; loading one would import the real gevent beside
            # greenwheel (both installed is a normal state while porting).
            if (dist.metadata["Name"] or "").lower() == "gevent":
                continue
            for entry in dist.entry_points:
                if not entry.group.startswith("gevent.plugins."):
                    continue
                ident = (entry.group, entry.name, entry.value)
                if ident not in seen:  # a distribution found twice on sys.path
                    seen.add(ident)
                    found.setdefault(entry.group, []).append(entry)
        _plugin_cache = (path, found)
    return found.get(group, ())


def _describe(event, *names):
    return "<%s %s>" % (
        type(event).__name__,
        " ".join("%s=%r" % (name, getattr(event, name)) for name in names),
    )


# --- the monitoring thread -------------------------------------------------------------------


class IPeriodicMonitorThread(Interface):
    """The thread that watches a hub (``hub.periodic_monitoring_thread``)."""

    def add_monitoring_function(function, period):
        """Call ``function(hub)`` about every *period* seconds from the monitoring thread."""


class IPeriodicMonitorThreadStartedEvent(Interface):
    """A hub's monitoring thread started."""

    monitor = Attribute("The IPeriodicMonitorThread that started.")


@implementer(IPeriodicMonitorThreadStartedEvent)
class PeriodicMonitorThreadStartedEvent:
    """A hub's monitoring thread started: *monitor* is the ``PeriodicMonitoringThread``.

    A subscriber may register more checks with ``monitor.add_monitoring_function``.
    """

    ENTRY_POINT_NAME = "gevent.plugins.hub.periodic_monitor_thread_started"

    def __init__(self, monitor):
        self.monitor = monitor

    def __repr__(self):
        return _describe(self, "monitor")


class IEventLoopBlocked(Interface):
    """A greenlet kept its hub's loop from running too long."""

    greenlet = Attribute("The greenlet that ran without switching.")
    blocking_time = Attribute("At least this many seconds passed without a switch.")
    info = Attribute("The report: a list of text lines, with the stacks.")
    hub = Attribute("The hub that was blocked, or None.")


@implementer(IEventLoopBlocked)
class EventLoopBlocked:
    """*greenlet* kept its hub's loop from running for at least *blocking_time*
    seconds; *info* is the report (a list of text lines, with the stacks)."""

    def __init__(self, greenlet, blocking_time, info, *, hub=None):
        self.greenlet = greenlet
        self.blocking_time = blocking_time
        self.info = info
        self.hub = hub

    def __repr__(self):
        return _describe(self, "greenlet", "blocking_time")


# --- memory ----------------------------------------------------------------------------------


class IMemoryUsageThresholdExceeded(Interface):
    """The process uses more memory than ``config.max_memory_usage``."""

    mem_usage = Attribute("The memory the process uses now, in bytes.")
    max_allowed = Attribute("The threshold, in bytes.")
    memory_info = Attribute("psutil's memory statistics for the process.")


class IMemoryUsageUnderThreshold(Interface):
    """The process's memory fell back under the threshold it had exceeded."""

    mem_usage = Attribute("The memory the process uses now, in bytes.")
    max_allowed = Attribute("The threshold, in bytes.")
    max_memory_usage = Attribute("The highest usage seen while over the threshold, in bytes.")
    memory_info = Attribute("psutil's memory statistics for the process.")


class _MemoryEvent:
    def __init__(self, mem_usage, max_allowed, memory_info):
        self.mem_usage = mem_usage
        self.max_allowed = max_allowed
        self.memory_info = memory_info

    def __repr__(self):
        return _describe(self, "mem_usage", "max_allowed")


@implementer(IMemoryUsageThresholdExceeded)
class MemoryUsageThresholdExceeded(_MemoryEvent):
    """Memory use went over the threshold (sent again at each higher reading, as in gevent)."""


@implementer(IMemoryUsageUnderThreshold)
class MemoryUsageUnderThreshold(_MemoryEvent):
    """Memory use came back under the threshold after exceeding it."""

    def __init__(self, mem_usage, max_allowed, memory_info, max_usage):
        super().__init__(mem_usage, max_allowed, memory_info)
        self.max_memory_usage = max_usage


# --- monkey patching -------------------------------------------------------------------------


class IGeventPatchEvent(Interface):
    """Something is being, or was, monkey-patched."""

    source = Attribute("Where the patches come from (a greenwheel module).")
    target = Attribute("What is patched (a standard module, or None for patch_all).")


@implementer(IGeventPatchEvent)
class GeventPatchEvent:
    def __init__(self, source, target):
        self.source = source
        self.target = target

    def __repr__(self):
        return _describe(self, "source", "target")


class IGeventWillPatchEvent(IGeventPatchEvent):
    """About to patch; a subscriber may raise :class:`DoNotPatch` to veto it."""


class DoNotPatch(BaseException):
    """Raised by a subscriber of a *will patch* event: skip that patch."""


@implementer(IGeventWillPatchEvent)
class GeventWillPatchEvent(GeventPatchEvent):
    pass


class IGeventDidPatchEvent(IGeventPatchEvent):
    """A patch was applied."""


@implementer(IGeventDidPatchEvent)
class GeventDidPatchEvent(GeventPatchEvent):
    pass


class IGeventWillPatchModuleEvent(IGeventWillPatchEvent):
    """About to patch one standard module."""

    module_name = Attribute("The name of the standard module.")
    target_item_names = Attribute("The names that will be replaced.")


@implementer(IGeventWillPatchModuleEvent)
class GeventWillPatchModuleEvent(GeventWillPatchEvent):
    ENTRY_POINT_NAME = "gevent.plugins.monkey.will_patch_module"

    def __init__(self, module_name, source, target, items):
        super().__init__(source, target)
        self.module_name = module_name
        self.target_item_names = items


class IGeventDidPatchModuleEvent(IGeventDidPatchEvent):
    """One standard module was patched."""

    module_name = Attribute("The name of the standard module.")


@implementer(IGeventDidPatchModuleEvent)
class GeventDidPatchModuleEvent(GeventDidPatchEvent):
    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_module"

    def __init__(self, module_name, source, target):
        super().__init__(source, target)
        self.module_name = module_name


class IGeventWillPatchAllEvent(IGeventWillPatchEvent):
    """``patch_all()`` is about to patch."""

    patch_all_arguments = Attribute("The arguments patch_all was called with, by name.")
    patch_all_kwargs = Attribute("Extra keyword arguments patch_all was given.")

    def will_patch_module(module_name):
        """Whether patch_all will patch *module_name*."""


class _PatchAllMixin:
    def __init__(self, patch_all_arguments, patch_all_kwargs):
        super().__init__(None, None)
        self._patch_all_arguments = patch_all_arguments
        self._patch_all_kwargs = patch_all_kwargs

    @property
    def patch_all_arguments(self):
        return dict(self._patch_all_arguments)

    @property
    def patch_all_kwargs(self):
        return dict(self._patch_all_kwargs)

    def __repr__(self):
        return "<%s %r>" % (type(self).__name__, self._patch_all_arguments)


@implementer(IGeventWillPatchAllEvent)
class GeventWillPatchAllEvent(_PatchAllMixin, GeventWillPatchEvent):
    ENTRY_POINT_NAME = "gevent.plugins.monkey.will_patch_all"

    def will_patch_module(self, module_name):
        return bool(self.patch_all_arguments.get(module_name))


class IGeventDidPatchBuiltinModulesEvent(IGeventDidPatchEvent):
    """``patch_all()`` patched the standard modules it was asked to."""

    patch_all_arguments = Attribute("The arguments patch_all was called with, by name.")
    patch_all_kwargs = Attribute("Extra keyword arguments patch_all was given.")


@implementer(IGeventDidPatchBuiltinModulesEvent)
class GeventDidPatchBuiltinModulesEvent(_PatchAllMixin, GeventDidPatchEvent):
    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_builtins"


class IGeventDidPatchAllEvent(IGeventDidPatchEvent):
    """``patch_all()`` finished."""


@implementer(IGeventDidPatchAllEvent)
class GeventDidPatchAllEvent(_PatchAllMixin, GeventDidPatchEvent):
    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_all"
