"""greenwheel.config: gevent's settings object, for the settings that apply.

Each setting has a value assigned in code (``greenwheel.config.monitor_thread
= True``) or, until then, one read from the environment under gevent's
variable name (``GEVENT_MONITOR_THREAD_ENABLE``) or the same name with a
``GREENWHEEL_`` prefix instead of ``GEVENT_`` (which wins).

Ground rules:
- A setting greenwheel implements changes behaviour; a bad value raises
  ``ValueError`` / ``TypeError`` at assignment (or, from the environment, at
  first use).
- gevent's settings that choose machinery greenwheel does not have (the
  loop backend, c-ares, the file object class...) are accepted, with a
  ``RuntimeWarning`` saying they have no effect, so ported start-up code
  keeps working; reading one gives what was assigned (or gevent's default).
- Any other name is an ``AttributeError``: a typo must not pass silently.
- Every other module imports this one, so it imports none of them (only
  ``_typecheck``, and the extension module for ``config.loop``): a module
  that copies a setting to where a hot path reads it registers with
  :func:`on_change`, and a setting naming a class (``resolver``) imports it
  by its dotted name.
"""

from __future__ import annotations

import importlib
import os
import warnings

from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["Config", "config"]

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no", "")


def _boolean(value):
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("not a boolean: %r" % (value,))
    return bool(value)


# gevent's name for the same parser (``gevent._config.validate_bool``).
validate_bool = _boolean


def _positive_seconds(value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError("not a number of seconds: %r" % (value,)) from None
    if not seconds > 0:  # NaN too
        raise ValueError("must be > 0, not %r" % (value,))
    return seconds


def validate_invalid(value):
    """The parser of a setting that takes no value: any value is an error (gevent's name)."""
    raise ValueError("not a valid value: %r" % (value,))


class ImportableSetting:
    """A setting whose value names an object to import (gevent's ``ImportableSetting``).

    The value is the object itself, or text: a short name from
    :attr:`shortname_map`, or a dotted path ``package.module.name``; several
    may be given (a list, or comma-separated text), the first that imports
    wins.  A path with ``/`` (a file system location) is refused.
    """

    #: Short names and the dotted paths they stand for.
    shortname_map: dict[str, str] = {}

    def _import_one_of(self, candidates):
        if not candidates:
            raise ImportError("Cannot import from empty list")
        for candidate in candidates[:-1]:
            try:
                return self._import_one(candidate)
            except ImportError:
                pass
        return self._import_one(candidates[-1])

    def _import_one(self, path):
        if not isinstance(path, str):
            return path  # the object itself
        path = self.shortname_map.get(path.strip().lower(), path.strip())
        if "." not in path or "/" in path:
            raise ImportError(
                "Cannot import %r: give package.module.name, or one of %s"
                % (path, ", ".join(sorted(self.shortname_map)) or "no short names")
            )
        module_name, name = path.rsplit(".", 1)
        module = importlib.import_module(module_name)
        try:
            return getattr(module, name)
        except AttributeError:
            raise ImportError("Cannot import %r from %r" % (name, module_name)) from None

    @staticmethod
    def _convert(value):
        # Text is a comma-separated list, as in the environment.
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    def validate(self, value):
        if isinstance(value, type):
            return value
        if not isinstance(value, (list, tuple)):
            return self._import_one(value)
        return self._import_one_of(list(value))

    def get_options(self):
        """Each short name with what it imports (or the ImportError it raises)."""
        options = {}
        for name, path in self.shortname_map.items():
            try:
                options[name] = self._import_one(path)
            except ImportError as ex:
                options[name] = ex
        return options


class Resolver(ImportableSetting):
    """The ``resolver`` setting: the class of the hubs' resolvers.

    ``get()`` reads the environment (``GREENWHEEL_RESOLVER``, then
    ``GEVENT_RESOLVER``) once, unless ``set()`` came first.  A name
    greenwheel does not have ('ares', say), or one whose module cannot be
    imported (dnspython missing), gives the thread resolver with a
    ``RuntimeWarning`` rather than an error, so start-up code written for
    gevent keeps working.
    """

    name = "resolver"
    environment_key = "GEVENT_RESOLVER"
    default = "thread"
    shortname_map = {
        "thread": "greenwheel.resolver.thread.Resolver",
        "block": "greenwheel.resolver.blocking.Resolver",
        "dnspython": "greenwheel.resolver.dnspython.Resolver",
    }

    def get(self):
        if "value" not in self.__dict__:
            raw = os.environ.get("GREENWHEEL_" + self.environment_key[len("GEVENT_") :])
            if raw is None:
                raw = os.environ.get(self.environment_key, self.default)
            self.value = self.validate(self._convert(raw))
        return self.value

    def set(self, value):
        self.value = self.validate(self._convert(value))

    def validate(self, value):
        try:
            return ImportableSetting.validate(self, value)
        except ImportError as ex:
            # By name, as the setting's values are: this module sits below
            # everything else and imports none of it.
            thread_resolver = self._import_one(self.shortname_map[self.default])
            names = value if isinstance(value, (list, tuple)) else [value]
            known = [n for n in names if isinstance(n, str) and "." in self._expand(n)]
            if known:
                # A real module failed to import: say why.
                message = "%s: using 'thread'" % (ex,)
            else:
                message = (
                    "greenwheel has no resolver %r (it has 'thread', 'block' and 'dnspython'): "
                    "using 'thread'" % (",".join(str(n) for n in names),)
                )
            warnings.warn(message, RuntimeWarning, stacklevel=4)
            return thread_resolver

    def _expand(self, name):
        return self.shortname_map.get(name.strip().lower(), name.strip())


def _resolver_class(value):
    # As in gevent, reading the setting gives the class ('thread' -> the class).
    setting = Resolver()
    return setting.validate(setting._convert(value))


def _nameservers(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    servers = [str(server) for server in value if str(server).strip()]
    return servers or None


def _optional_bytes(value):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("not a number of bytes: %r" % (value,)) from None
    if number <= 0:
        raise ValueError("must be > 0, not %r" % (value,))
    return number


#: name -> (gevent's environment variable, parser, default, what it does).
_SETTINGS = {
    "monitor_thread": (
        "GEVENT_MONITOR_THREAD_ENABLE",
        _boolean,
        False,
        "start a monitoring thread for every hub (see greenwheel.events)",
    ),
    "max_blocking_time": (
        "GEVENT_MAX_BLOCKING_TIME",
        _positive_seconds,
        0.1,
        "seconds a greenlet may run without switching before it is reported",
    ),
    "print_blocking_reports": (
        "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS",
        _boolean,
        True,
        "print blocking reports to the hub's exception_stream (the event is always sent)",
    ),
    "resolver": (
        "GEVENT_RESOLVER",
        _resolver_class,
        "thread",
        "the resolver class of new hubs: 'thread' (worker threads), 'block' or 'dnspython', or a class",
    ),
    "max_memory_usage": (
        "GEVENT_MONITOR_MEMORY_MAX",
        _optional_bytes,
        None,
        "bytes of memory above which the monitoring thread sends MemoryUsageThresholdExceeded"
        " (needs psutil)",
    ),
    "resolver_nameservers": (
        "GEVENT_RESOLVER_NAMESERVERS",
        _nameservers,
        None,
        "the DNS servers of the dnspython resolver (a list, or comma-separated text);"
        " None: /etc/resolv.conf's",
    ),
    "resolver_timeout": (
        "GEVENT_RESOLVER_TIMEOUT",
        lambda value: None if value is None else _positive_seconds(value),
        None,
        "seconds the dnspython resolver tries a name before giving up; None: dnspython's",
    ),
    "memory_monitor_period": (
        "GEVENT_MONITOR_MEMORY_PERIOD",
        _positive_seconds,
        5.0,
        "seconds between the monitoring thread's memory checks",
    ),
    "track_greenlet_tree": (
        "GEVENT_TRACK_GREENLET_TREE",
        _boolean,
        True,
        "record spawning_greenlet and spawn_tree_locals on every Greenlet",
    ),
}

#: gevent's settings that select machinery greenwheel does not have, with
#: gevent's defaults.
_NO_EFFECT = {
    "ares_flags": None,
    "ares_ndots": None,
    "ares_servers": None,
    "ares_tcp_port": None,
    "ares_timeout": None,
    "ares_tries": None,
    "ares_udp_port": None,
    "disable_watch_children": False,
    "fileobject": "posix",
    "format_context": "pprint.saferepr",
    "libev_backend": None,
    "loop": None,  # read: greenwheel's loop class (see Config.__getattr__)
    "threadpool": "greenwheel.threadpool.ThreadPool",
    "threadpool_idle_task_timeout": 5.0,
    "trace_malloc": False,
}


class Config:
    """The settings (see the module documentation); one instance, ``greenwheel.config``."""

    def __init__(self):
        object.__setattr__(self, "_values", {})

    @property
    def settings(self):
        """Every setting's name, with what it does (gevent's ``config.settings``)."""
        described = {name: spec[3] for name, spec in _SETTINGS.items()}
        for name in _NO_EFFECT:
            described[name] = "accepted as in gevent; no effect (greenwheel has its own machinery)"
        return described

    def __dir__(self):
        # As gevent's: the settings, nothing else.
        return sorted(set(_SETTINGS) | set(_NO_EFFECT))

    def __getattr__(self, name):
        values = self.__dict__["_values"]
        if name in values:
            return values[name]
        spec = _SETTINGS.get(name)
        if spec is not None:
            env, parse, default, _ = spec
            source = "GREENWHEEL_" + env[len("GEVENT_") :]
            raw = os.environ.get(source)
            if raw is None:
                raw, source = os.environ.get(env), env
            if raw is None:
                raw = default
                if raw is None:
                    return None
            try:
                return parse(raw)
            except ValueError as ex:
                raise ValueError("%s: %s" % (source, ex)) from None
        if name == "loop":
            # As in gevent, the setting reads as the loop class (gevent.core.loop).
            from ._core import Loop

            return Loop
        if name in _NO_EFFECT:
            return _NO_EFFECT[name]
        raise AttributeError(self._unknown(name))

    def __setattr__(self, name, value):
        spec = _SETTINGS.get(name)
        if spec is not None:
            try:
                value = spec[1](value)
            except ValueError as ex:
                raise ValueError("config.%s: %s" % (name, ex)) from None
            self._values[name] = value
            _apply(name, value)
            return
        if name in _NO_EFFECT:
            warnings.warn(
                "greenwheel.config.%s has no effect: greenwheel has its own loop, resolver "
                "and file objects" % (name,),
                RuntimeWarning,
                stacklevel=2,
            )
            self._values[name] = value
            return
        raise AttributeError(self._unknown(name))

    def set(self, name, value):
        """``setattr(config, name, value)``, as gevent's ``Config.set``."""
        setattr(self, name, value)

    @staticmethod
    def _unknown(name):
        return "greenwheel.config has no setting %r (settings: %s)" % (
            name,
            ", ".join(sorted(_SETTINGS)),
        )

    def __repr__(self):
        return "<greenwheel.config %s>" % (
            " ".join("%s=%r" % (name, getattr(self, name)) for name in sorted(_SETTINGS)),
        )


#: name -> the callbacks :func:`on_change` registered for that setting.
_on_change: dict[str, list[Callable[[Any], object]]] = {}


def on_change(name: str, callback: Callable[[Any], object]) -> None:
    """Call ``callback(value)`` whenever setting *name* is assigned.

    For the modules that copy a setting to where a hot path looks (a module
    global read per spawn), so that this module, which every other one
    imports, need not import them to keep their copies current.
    """
    if name not in _SETTINGS:
        raise AttributeError(Config._unknown(name))
    _on_change.setdefault(name, []).append(callback)


def _apply(name, value):
    for callback in _on_change.get(name, ()):
        callback(value)


config = Config()
