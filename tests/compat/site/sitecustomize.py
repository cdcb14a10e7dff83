"""Start-up hook of the Python processes a compatibility test starts under
greenwheel: the same alias and test-package set-up as the test's own process
(see ``tests/compat/_setup.py``). Does nothing unless the harness set it up.

The set-up waits for the first ``import gevent`` (or of greenwheel): most
children never import either, and importing greenwheel at every start-up
costs each child about 70 ms, enough to push gevent's tests that time a
batch of child processes over their limits.
"""

import os
import sys

_gevent_dir = os.environ.get("GREENWHEEL_COMPAT_GEVENT_DIR")


class _SetUpOnFirstImport:
    """A meta-path finder that sets the alias up when gevent is first imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".", 1)[0] not in ("gevent", "greenwheel"):
            return None
        sys.meta_path.remove(self)
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            import _setup
        finally:
            del sys.path[0]
        _setup.setup("greenwheel", _gevent_dir)
        # The finders set-up installed answer this import too.
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


if _gevent_dir:
    sys.meta_path.insert(0, _SetUpOnFirstImport())
