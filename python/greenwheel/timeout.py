"""Timeouts for arbitrary blocking code (gevent.timeout)."""

from ._timeout import Timeout, with_timeout

__all__ = ["Timeout", "with_timeout"]
