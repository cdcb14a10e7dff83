"""Which interpreters greenwheel runs on, checked before anything else loads.

greenwheel's loop, hub and greenlets share state without locks, relying on
the GIL to serialise OS threads (each thread has its own hub, but the thread
pool, the resolver and the cross-thread wake-ups touch shared objects). A
free-threaded CPython (3.13t, ``Py_GIL_DISABLED``) would either re-enable the
GIL for the extension with only a warning, or run that code truly in
parallel; neither is supported, so the import refuses with a clear message
instead.
"""

import sys
import sysconfig

SUPPORTED = ((3, 11), (3, 12), (3, 13))


def check(gil_disabled=None, version=None):
    """Raise ImportError if this interpreter cannot run greenwheel."""
    if gil_disabled is None:
        gil_disabled = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if version is None:
        version = sys.version_info[:2]
    if gil_disabled:
        raise ImportError(
            "greenwheel does not support free-threaded CPython (this is a "
            "Py_GIL_DISABLED build, e.g. python3.13t): its event loop relies on the GIL. "
            "Use the regular CPython build."
        )
    if tuple(version) < SUPPORTED[0]:
        raise ImportError(
            "greenwheel needs CPython %d.%d or newer (this is %d.%d)"
            % (SUPPORTED[0] + tuple(version))
        )


check()
