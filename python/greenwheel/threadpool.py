"""Native thread pools whose results are waited for cooperatively (gevent.threadpool).

:class:`ThreadPool` runs blocking functions in real OS threads (even when
:mod:`threading` is monkey-patched); :meth:`ThreadPool.spawn` returns an
AsyncResult-like object that blocks only the calling greenlet.
:class:`ThreadPoolExecutor` is the ``concurrent.futures`` interface on top.
The hub's default pool is ``greenwheel.get_hub().threadpool``.
"""

from ._threadpool import (  # noqa: F401 - as gevent has them
    ThreadPool,
    ThreadPoolExecutor,
    ThreadResult,
    _get_thread_profile,
    _get_thread_trace,
    _WorkerGreenlet,
)

__all__ = ["ThreadPool", "ThreadPoolExecutor", "ThreadResult"]
