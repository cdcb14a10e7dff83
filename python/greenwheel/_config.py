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
"""

import os
import warnings

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


def _resolver_class(value):
    # As in gevent, reading the setting gives the class ('thread' -> the class).
    from ._resolver import resolver_class

    return resolver_class(value)


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


def _apply(name, value):
    # Settings read on hot paths are copied where those paths look.
    if name == "track_greenlet_tree":
        from . import _greenlet, _hub

        _greenlet._track_tree = _hub._track_tree = value


config = Config()
