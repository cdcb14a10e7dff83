"""Instructions per keep-alive request of the http_stream row's servers, and
of the greenlet round trip a blocking handler makes per request, counted by
callgrind: the floor under StreamServer's target against the Protocol
servers (issue 19), in instructions.

Each server serves one keep-alive connection from a plain client process
that sends a request, reads the whole response and pauses a millisecond, so
that every request takes the same path (the server always waits for it in
its loop).  The server's instructions for N2 requests minus those for N1,
over N2 - N1, are one request without start-up; the server exits when the
connection closes.

- ``greenwheel``: ``StreamServer`` running benches/workloads.py's
  blocking-style ``_http_handler``, the http_stream row's server;
- ``uvloop``, ``rloop``, ``greenwheel.asyncio``, ``asyncio``: the same
  row's ``_HTTPProtocol`` server on that event loop;
- ``greenlet``: no server. Two bare ``greenlet.greenlet`` objects switch
  there and back (each side through a Python-level ``switch()``, as the
  handler's ``recv`` and the hub's dispatch do), N2 - N1 times: what a
  blocking handler pays per request on top of a callback's work.

    python benches/stream_callgrind.py greenwheel greenlet uvloop rloop
    python benches/stream_callgrind.py --tree /tmp/old/python greenwheel

Needs valgrind; runs the real interpreter (a pyenv shim breaks valgrind).
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pywsgi_callgrind import callgrind_total, client  # noqa: E402

STREAM_SERVER = r"""
import os, sys
portfile = sys.argv[2]
from greenwheel.server import StreamServer
import greenwheel.socket as gsocket
from workloads import _http_handler

def handler(sock, address):
    _http_handler(sock, address)
    os._exit(0)  # the client is done: stop counting

listener = gsocket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
server = StreamServer(listener, handler)
server.start()
with open(portfile + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
"""

PROTOCOL_SERVER = r"""
import asyncio, importlib, os, sys
portfile, lib = sys.argv[2], sys.argv[3]
from workloads import _HTTPProtocol

class Protocol(_HTTPProtocol):
    def connection_lost(self, exc):
        os._exit(0)  # the client is done: stop counting

async def main():
    server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", 0)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    await asyncio.sleep(3600)

loop = asyncio.new_event_loop() if lib == "asyncio" else importlib.import_module(lib).new_event_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(main())
"""

ROUND_TRIPS = r"""
import sys, greenlet
n = int(sys.argv[1])

def handler():
    while True:
        hub.switch()

def hub_run():
    for _ in range(n):
        glet.switch()

glet = greenlet.greenlet(handler)
hub = greenlet.greenlet(hub_run)
hub.switch()
"""


def count(lib, tree, n, seed):
    """callgrind's total for *lib* serving (or switching) *n* times."""
    script = {"greenwheel": STREAM_SERVER, "greenlet": ROUND_TRIPS}.get(lib, PROTOCOL_SERVER)
    drive = None if lib == "greenlet" else (lambda n, portfile: client(n, portfile, 0.001))
    return callgrind_total(script, n, lib, tree, seed, drive=drive, timeout=300)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "libs",
        nargs="+",
        choices=["greenwheel", "greenlet", "uvloop", "rloop", "greenwheel.asyncio", "asyncio"],
    )
    parser.add_argument("--tree", default=os.path.join(os.path.dirname(HERE), "python"))
    parser.add_argument("--n1", type=int, default=1000)
    parser.add_argument("--n2", type=int, default=6000)
    args = parser.parse_args()
    for lib in args.libs:
        low = count(lib, args.tree, args.n1, 1)
        high = count(lib, args.tree, args.n2, 1)
        what = "round trip" if lib == "greenlet" else "request"
        per = (high - low) / (args.n2 - args.n1)
        print(f"{lib:20s} {per:8.0f} instructions per {what}", flush=True)


if __name__ == "__main__":
    main()
