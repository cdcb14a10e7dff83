"""gunicorn workers running on greenwheel.

::

    gunicorn -k greenwheel.gunicorn.Worker --worker-connections 1000 app:app

Each worker process monkey-patches the standard library (``patch_all``),
re-initialises its hub after the fork, and serves every connection in a
greenlet of a :class:`greenwheel.pool.Pool` of ``worker_connections``
greenlets, so a slow request (waiting on a database, another service, a
``sleep``) does not hold up the others.

* :class:`Worker` serves with :class:`greenwheel.pywsgi.WSGIServer`
  (like gunicorn's ``gevent_pywsgi`` worker); access lines go to
  gunicorn's access log.
* :class:`StreamWorker` uses a :class:`greenwheel.server.StreamServer` and
  gunicorn's own HTTP parser (like gunicorn's ``gevent`` worker).

Graceful shutdown (``SIGTERM``): the listeners close at once, requests in
flight may finish for up to ``graceful_timeout`` seconds, then the
remaining handlers are killed.  ``SIGQUIT``/``SIGINT`` stop at once.
"""

import os
import sys
import time
from datetime import datetime
from functools import partial

import gunicorn
from gunicorn.workers.base_async import AsyncWorker

import greenwheel

from . import monkey

__all__ = ["Worker", "StreamWorker", "PyWSGIWorker", "GreenwheelWorker"]

# greenwheel's own release (under the gevent alias, greenwheel.__version__ names
# the gevent API it provides).
VERSION = "greenwheel/%s gunicorn/%s" % (greenwheel._core.__version__, gunicorn.__version__)

#: How often the main greenlet checks for shutdown (seconds).
_TICK = 0.1


class StreamWorker(AsyncWorker):
    """A gunicorn worker: StreamServer + gunicorn's HTTP handling, in greenlets."""

    #: A pywsgi-style server class; None serves with StreamServer + gunicorn's parser.
    server_class = None
    wsgi_handler = None

    def patch(self):
        monkey.patch_all()
        from . import socket

        # The listeners gunicorn created become cooperative sockets.
        self.sockets = [
            socket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach())
            for s in self.sockets
        ]

    def init_process(self):
        self.patch()
        greenwheel.reinit()
        super().init_process()

    def init_signals(self):
        super().init_signals()
        # gunicorn points the wake-up fd at its own pipe; signals must wake
        # greenwheel's loop instead, or they would wait for its next event.
        import signal

        loop = greenwheel.get_hub().loop
        if getattr(loop, "sigfd", -1) >= 0:
            try:
                signal.set_wakeup_fd(loop.sigfd, warn_on_full_buffer=False)
            except (ValueError, OSError):
                pass

    def notify(self):
        super().notify()
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            sys.exit(0)

    def timeout_ctx(self):
        return greenwheel.Timeout(self.cfg.keepalive, False)

    def _make_server(self, listener, pool, ssl_args):
        from .server import StreamServer

        if self.server_class is not None:
            from gunicorn.http.wsgi import base_environ

            environ = base_environ(self.cfg)
            environ.update({"wsgi.multithread": True, "SERVER_SOFTWARE": VERSION})
            extra = {}
            keepalive = self.cfg.keepalive
            extra["keepalive_timeout"] = keepalive if keepalive and keepalive > 0 else 0
            server = self.server_class(
                listener,
                application=self.wsgi,
                spawn=pool,
                log=self.log,
                handler_class=self.wsgi_handler,
                environ=environ,
                **extra,
                **ssl_args,
            )
            server.gunicorn_access = _access_logger(self.log)
            return server
        server = StreamServer(
            listener, handle=partial(self.handle, listener), spawn=pool, **ssl_args
        )
        if self.cfg.workers > 1:
            server.max_accept = 1
        return server

    def run(self):
        from .pool import Pool

        ssl_args = {}
        if self.cfg.is_ssl:
            from gunicorn.sock import ssl_context

            ssl_args = {"ssl_context": ssl_context(self.cfg)}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = self._make_server(listener, Pool(self.worker_connections), ssl_args)
            server.start()
            servers.append(server)

        last_notify = 0.0
        while self.alive:
            now = time.monotonic()
            if now - last_notify >= 1.0:
                self.notify()
                last_notify = now
            greenwheel.sleep(_TICK)
        self._graceful_stop(servers)

    def _graceful_stop(self, servers):
        try:
            # Stop accepting at once; in-flight requests may finish.
            for server in servers:
                server.close()
            deadline = time.monotonic() + self.cfg.graceful_timeout
            last_notify = 0.0
            while time.monotonic() < deadline:
                if not any(len(server.pool) for server in servers):
                    return
                now = time.monotonic()
                if now - last_notify >= 1.0:
                    self.notify()
                    last_notify = now
                greenwheel.sleep(_TICK)
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
            for server in servers:
                server.stop(timeout=1)
        except Exception:  # shutting down: nothing useful to do with it
            self.log.exception("Error during graceful shutdown")

    def handle(self, listener, client, addr):
        client.setblocking(1)
        super().handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr):
        try:
            super().handle_request(listener_name, req, sock, addr)
        except (greenwheel.GreenletExit, SystemExit):
            pass

    # These block (sleep, sys.exit): run them in a greenlet, not in
    # whatever greenlet the signal interrupted.
    def handle_quit(self, sig, frame):
        greenwheel.spawn(super().handle_quit, sig, frame)

    def handle_usr1(self, sig, frame):
        greenwheel.spawn(super().handle_usr1, sig, frame)


GreenwheelWorker = StreamWorker


def _access_logger(log):
    # gunicorn >= 23 says whether it writes access lines at all; with an
    # older one, every request is handed to log.access (which may drop it).
    if not getattr(log, "access_log_enabled", True):
        return None
    return getattr(log, "access", None)


class _Response:
    """What gunicorn's access logger reads from a response."""

    def __init__(self, status, headers, length):
        self.status = status
        self.headers = headers
        self.sent = length


def _pywsgi_classes():
    try:
        from . import pywsgi
    except ImportError:  # pragma: no cover - pywsgi not available
        return None, None

    class PyWSGIHandler(pywsgi.WSGIHandler):
        """greenwheel's WSGI handler, logging to gunicorn's access log.

        gunicorn's environ keys come without a ``get_environ`` override,
        which would turn off pywsgi's fused request path: the socket is
        put in the connection's environ template once, the raw request
        target goes in through :attr:`raw_uri_key`.
        """

        raw_uri_key = "RAW_URI"

        def __init__(self, sock, address, server, rfile=None):
            super().__init__(sock, address, server, rfile)
            env = self._conn_env
            # gunicorn's own workers call it "gunicorn.socket"; its gevent
            # pywsgi worker "gunicorn.sock": applications look for either.
            env["gunicorn.socket"] = env["gunicorn.sock"] = sock

        def _logs_requests(self):
            # Requests are logged only to gunicorn's access log, when it is on.
            if type(self).log_request is not PyWSGIHandler.log_request:
                return True
            return self.server.gunicorn_access is not None

        def log_request(self):
            # Building the access record (two datetimes, the request
            # headers) costs as much as a small request: skip it when
            # gunicorn would throw the record away (access is None).
            access = self.server.gunicorn_access
            if access is None:
                return
            start = datetime.fromtimestamp(self.time_start)
            finish = datetime.fromtimestamp(self.time_finish or time.time())
            status = self.status
            if isinstance(status, bytes):
                status = status.decode("latin-1")
            response = _Response(status, self.response_headers or [], self.response_length)
            access(response, list(self.header_list or ()), self.environ, finish - start)

    class PyWSGIServer(pywsgi.WSGIServer):
        #: gunicorn's ``Logger.access``, or None while its access log is off.
        #: Decided once per worker: a configuration reload starts new workers.
        gunicorn_access = None

    return PyWSGIServer, PyWSGIHandler


_PyWSGIServer, _PyWSGIHandler = _pywsgi_classes()


class PyWSGIWorker(StreamWorker):
    """A gunicorn worker serving with :class:`greenwheel.pywsgi.WSGIServer`."""

    server_class = _PyWSGIServer
    wsgi_handler = _PyWSGIHandler


#: The worker to name on gunicorn's command line (``-k greenwheel.gunicorn.Worker``).
Worker = PyWSGIWorker if _PyWSGIServer is not None else StreamWorker
