"""Debugging helpers (gevent.util): format_run_info, print_run_info,
GreenletTree, wrap_errors and assert_switches."""

from ._util import GreenletTree, assert_switches, format_run_info, print_run_info, wrap_errors

__all__ = ["GreenletTree", "assert_switches", "format_run_info", "print_run_info", "wrap_errors"]
