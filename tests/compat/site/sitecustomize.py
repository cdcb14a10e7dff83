"""Start-up hook of the Python processes a compatibility test starts under
greenwheel: the same alias and test-package set-up as the test's own process
(see ``tests/compat/_setup.py``). Does nothing unless the harness set it up."""

import os
import sys

_gevent_dir = os.environ.get("GREENWHEEL_COMPAT_GEVENT_DIR")
if _gevent_dir:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import _setup
    finally:
        del sys.path[0]
    _setup.setup("greenwheel", _gevent_dir)
