"""Debugging helpers (gevent.util): format_run_info, print_run_info,
GreenletTree, wrap_errors, assert_switches and clear_stack_frames."""

from ._util import (
    GreenletTree,
    _FailedToSwitch,  # noqa: F401 - gevent.util's name for assert_switches' failure
    assert_switches,
    clear_stack_frames,
    format_run_info,
    print_run_info,
    wrap_errors,
)

__all__ = [
    "GreenletTree",
    "assert_switches",
    "clear_stack_frames",
    "format_run_info",
    "print_run_info",
    "wrap_errors",
]
