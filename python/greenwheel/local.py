"""Greenlet-local storage (gevent.local)."""

from ._local import all_local_dicts_for_greenlet, local

__all__ = ["all_local_dicts_for_greenlet", "local"]
