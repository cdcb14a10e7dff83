"""Event and AsyncResult: wake waiting greenlets (gevent.event)."""

from ._event import AsyncResult, Event

__all__ = ["Event", "AsyncResult"]
