"""Locking primitives for greenlets (gevent.lock)."""

from ._lock import DummySemaphore, Lock, RLock
from ._semaphore import BoundedSemaphore, Semaphore

__all__ = ["Semaphore", "BoundedSemaphore", "DummySemaphore", "RLock", "Lock"]
