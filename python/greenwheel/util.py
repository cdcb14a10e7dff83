"""Debugging helpers (gevent.util): format_run_info, print_run_info,
GreenletTree, wrap_errors, assert_switches and clear_stack_frames."""

from ._util import *  # noqa: F403
from ._util import (
    __all__,  # noqa: F401
    _FailedToSwitch,  # noqa: F401 - gevent.util's name for assert_switches' failure
)
