"""Platform facts and small helpers under the names of gevent's ``gevent._compat``.

gevent's ``_compat`` is private, but ported code and gevent's own test
support import a handful of its names (``PYPY``, ``perf_counter``,
``reraise``, ...). Through ``greenwheel.as_gevent`` that import lands here, so
the names a ported program may reach for exist with gevent's meaning. Nothing
in greenwheel depends on this module.
"""

import io
import os
import sys
import time

__all__ = [
    "LINUX",
    "NativeStrIO",
    "OSX",
    "PURE_PYTHON",
    "PY3",
    "PYPY",
    "WIN",
    "fspath",
    "get_clock_info",
    "get_this_psutil_process",
    "perf_counter",
    "reraise",
    "thread_mod_name",
]

PY3 = True
PYPY = hasattr(sys, "pypy_version_info")
WIN = sys.platform.startswith("win")
LINUX = sys.platform.startswith("linux")
OSX = sys.platform == "darwin"
#: gevent's flag for "running without its C extensions"; greenwheel always has its engine.
PURE_PYTHON = False

thread_mod_name = "_thread"
NativeStrIO = io.StringIO
perf_counter = time.perf_counter
get_clock_info = time.get_clock_info
fspath = _fspath = os.fspath


def reraise(t, value, tb=None):
    """Raise *value* (or a new *t*) with traceback *tb*."""
    if value is None:
        value = t()
    if value.__traceback__ is not tb:
        raise value.with_traceback(tb)
    raise value


def get_this_psutil_process():
    """This process as a ``psutil.Process``, or None when psutil is not installed."""
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process()
