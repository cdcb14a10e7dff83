"""An interactive Python console served over TCP (gevent.backdoor).

``BackdoorServer(("127.0.0.1", 5001), locals={"app": app}).start()`` lets
``telnet 127.0.0.1 5001`` (or ``nc``) inspect a live process: every
connection gets its own console, in its own greenlet, while the rest of
the program keeps running.  Bind it to loopback: anyone who can connect
runs arbitrary code.

Ground rules:
- A console's ``print``, results and tracebacks go to its connection, not
  to the process's stdout: ``sys.stdin``/``stdout``/``stderr`` are the
  connection's only while the console's greenlet runs.  A greenlet trace
  function (registered with :mod:`greenwheel._trace`) swaps them at each
  switch into and out of a console, while at least one is connected.
- ``quit()``, ``exit()`` or end of input (Ctrl-D) closes the connection; the
  server goes on.
"""

import builtins
import code
import sys

import greenlet

from . import _trace
from ._server import StreamServer
from ._threadpool import _original

__all__ = ["BackdoorServer"]


class _Streams:
    # The connection streams of the consoles of one thread, and the trace
    # function that puts them in place (see the module documentation).
    def __init__(self):
        self.consoles = {}  # greenlet -> (stdin, stdout, stderr)
        self.real = None
        self.dispatcher = None

    def _swap(self, origin, target):
        consoles = self.consoles
        if origin in consoles:
            if target in consoles:
                sys.stdin, sys.stdout, sys.stderr = consoles[target]
            else:
                sys.stdin, sys.stdout, sys.stderr = self.real
        elif target in consoles:
            self.real = (sys.stdin, sys.stdout, sys.stderr)
            sys.stdin, sys.stdout, sys.stderr = consoles[target]

    def __call__(self, event, args):
        if event == "switch" or event == "throw":
            self._swap(args[0], args[1])

    def enter(self, glet, streams):
        if not self.consoles:
            self.dispatcher = _trace.add(self)
        self.consoles[glet] = streams
        self.real = (sys.stdin, sys.stdout, sys.stderr)
        sys.stdin, sys.stdout, sys.stderr = streams

    def leave(self, glet):
        del self.consoles[glet]
        sys.stdin, sys.stdout, sys.stderr = self.real
        if not self.consoles:
            _trace.remove(self.dispatcher, self)
            self.dispatcher = None


# A _Streams per OS thread (trace functions are per thread); the standard
# library's thread-local even after monkey-patching made it greenlet-local.
_per_thread = _original("threading", "local")()


def _streams_of_thread():
    streams = getattr(_per_thread, "streams", None)
    if streams is None:
        streams = _per_thread.streams = _Streams()
    return streams


class _Console(code.InteractiveConsole):
    def __init__(self, rfile, wfile, namespace):
        super().__init__(namespace)
        self._rfile = rfile
        self._wfile = wfile

    def raw_input(self, prompt=""):
        self.write(prompt)
        line = self._rfile.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def write(self, data):
        self._wfile.write(data)
        self._wfile.flush()


class _Quitter:
    # quit() / exit() in a console: end that console, not the process.
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Use %s() or Ctrl-D (i.e. EOF) to exit" % (self.name,)

    def __call__(self, code=None):
        raise SystemExit(code)


class BackdoorServer(StreamServer):
    """BackdoorServer(listener, locals=None, banner=None, **server_args)

    A :class:`~greenwheel.server.StreamServer` whose connections get an
    interactive console.  *locals* is a mapping copied into each console's
    namespace; *banner* replaces the greeting.
    """

    def __init__(self, listener, locals=None, banner=None, **server_args):
        super().__init__(listener, spawn=server_args.pop("spawn", "default"), **server_args)
        self.locals = locals
        self.banner = banner

    def _create_interactive_locals(self):
        # The builtins module itself (not its dict): locals() in the console
        # stays readable, as in gevent.
        namespace = {"__name__": "__console__", "__doc__": None, "__builtins__": builtins}
        namespace["builtins"] = builtins
        namespace["quit"] = _Quitter("quit")
        namespace["exit"] = _Quitter("exit")
        if self.locals:
            namespace.update(self.locals)
        return namespace

    def handle(self, conn, address):
        """Serve one console on *conn* until the client quits or disconnects."""
        rfile = conn.makefile("r", encoding="utf-8", errors="replace", newline="")
        wfile = conn.makefile("w", encoding="utf-8", errors="replace", newline="\r\n")
        console = _Console(rfile, wfile, self._create_interactive_locals())
        glet = greenlet.getcurrent()
        streams = _streams_of_thread()
        streams.enter(glet, (rfile, wfile, wfile))
        try:
            banner = self.banner
            if banner is None:
                banner = "Python %s on %s\n(%s on %s:%s)" % (
                    sys.version,
                    sys.platform,
                    type(self).__name__,
                    self.server_host,
                    self.server_port,
                )
            console.interact(banner, "")
        except (SystemExit, EOFError, OSError):
            pass  # quit(), end of input, or the client went away
        finally:
            streams.leave(glet)
            for f in (wfile, rfile):
                try:
                    f.close()
                except OSError:
                    pass
            try:
                conn.close()
            except OSError:
                pass
