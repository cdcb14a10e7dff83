"""Makes ``import gevent`` mean the implementation under test, in this process
and in every Python process it starts.

Used by ``runone.py`` for the test file's own process, and by
``site/sitecustomize.py`` for the processes a test starts (many of gevent's
tests run ``sys.executable -c "from gevent import monkey; ..."``): without it
those children would find no gevent at all under either implementation.

- ``gevent``: the wheel's directory comes first on the path, and on
  ``PYTHONPATH`` for children.
- ``greenwheel``: ``greenwheel.as_gevent`` resolves ``gevent`` and every
  ``gevent.X`` to greenwheel; only the two test packages (``gevent.testing``,
  ``gevent.tests``) are loaded from the wheel's files. The wheel's directory
  goes at the *end* of the path, behind the installed greenlet (the one
  greenwheel was built against); zope.interface and friends come from there
  if the environment lacks them. Children get ``site/`` on ``PYTHONPATH``,
  whose ``sitecustomize`` repeats this set-up.

Kept free of heavy imports: children pay for it at start-up.
"""

import importlib.abc
import importlib.machinery
import os
import sys

#: gevent's test packages: loaded from the wheel's files under either implementation.
TEST_PACKAGES = ("gevent.testing", "gevent.tests")
#: Tells a child's sitecustomize where the wheel is (set only for greenwheel runs).
ENV_GEVENT_DIR = "GREENWHEEL_COMPAT_GEVENT_DIR"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")


class TestPackageFinder(importlib.abc.MetaPathFinder):
    """Finds gevent's test packages in the wheel's directory.

    Under the alias ``gevent`` is greenwheel's package, whose ``__path__`` does
    not hold them, so the ordinary path finder would not look in the wheel.
    """

    def __init__(self, gevent_dir):
        self._package_dir = os.path.join(gevent_dir, "gevent")

    def find_spec(self, fullname, path=None, target=None):
        if fullname in TEST_PACKAGES:
            return importlib.machinery.PathFinder.find_spec(fullname, [self._package_dir])
        if fullname.startswith(tuple(p + "." for p in TEST_PACKAGES)):
            # Their modules, from their own directory (the alias would look in greenwheel).
            return importlib.machinery.PathFinder.find_spec(fullname, path)
        if fullname.startswith("greenwheel.") and "gevent" + fullname[10:] in TEST_PACKAGES:
            # 'from gevent import testing' asks the package (greenwheel) for the
            # attribute, then imports greenwheel.testing: give it the same module.
            from greenwheel.as_gevent import _SharedModuleLoader

            loader = _SharedModuleLoader("gevent" + fullname[10:])
            return importlib.machinery.ModuleSpec(fullname, loader, is_package=True)
        return None


def _prepend_env_path(entry):
    current = os.environ.get("PYTHONPATH")
    parts = [entry] + ([current] if current else [])
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def setup(impl, gevent_dir):
    """Set up this process for *impl* (idempotent), and its future children."""
    gevent_dir = os.path.abspath(gevent_dir)
    if impl == "gevent":
        if gevent_dir not in sys.path:
            sys.path.insert(0, gevent_dir)
            _prepend_env_path(gevent_dir)
        return
    if any(isinstance(f, TestPackageFinder) for f in sys.meta_path):
        return
    if gevent_dir not in sys.path:
        sys.path.append(gevent_dir)
    import greenwheel.as_gevent  # noqa: F401 - installs the alias

    sys.meta_path.insert(0, TestPackageFinder(gevent_dir))
    if os.environ.get(ENV_GEVENT_DIR) != gevent_dir:
        os.environ[ENV_GEVENT_DIR] = gevent_dir
        _prepend_env_path(SITE_DIR)
