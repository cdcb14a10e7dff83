"""Instructions per keep-alive request of greenwheel.pywsgi, counted by callgrind.

Wall-clock and CPU-time rows move by 10-20% between rounds on a loaded
machine; an instruction count does not.  For each source tree given (its
``python`` directory, holding its own built ``_core`` extension), a hello-world
WSGIServer runs under ``valgrind --tool=callgrind`` and a plain client process
sends keep-alive requests one at a time, waiting a few milliseconds before
each so that every request takes the same path (the server always waits for
it in the loop).  The server's instructions for N2 requests minus those for N1
requests, divided by N2 - N1, is the cost of one request without start-up.
Both runs of a round, for every tree, use the same ``PYTHONHASHSEED`` (the
round's number): with random seeds, the count moved by +-500 between runs.

    python benches/pywsgi_callgrind.py /tmp/old/python /work/main/python [--rounds 2]
    python benches/pywsgi_callgrind.py --app flask /tmp/old/python /work/main/python

``--app flask`` serves the Flask application of ``benches/wsgi_apps.py``
(compare.py's ``http_flask`` row) instead of the hello world: Flask returns
a Werkzeug iterable with a ``close()``, not a list.

Needs valgrind.  Each round takes about 15 s per tree.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import os, sys
n, portfile, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
from greenwheel.event import Event
from greenwheel.pywsgi import WSGIServer

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
done = Event()
count = 0

def app(environ, start_response):
    global count
    count += 1
    if count == n:
        done.set()
    start_response("200 OK", HEADERS)
    return [BODY]

if kind == "flask":
    from wsgi_apps import make_flask_app
    flask_app = make_flask_app()

    def app(environ, start_response):
        global count
        count += 1
        if count == n:
            done.set()
        return flask_app(environ, start_response)

server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(portfile + ".tmp", portfile)
done.wait()
os._exit(0)
"""


def client(n, portfile, pause):
    deadline = time.monotonic() + 120
    while not os.path.exists(portfile):
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    with open(portfile) as f:
        port = int(f.read())
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            time.sleep(pause)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            buf = b""
            while not complete(buf):
                data = s.recv(4096)
                if not data:
                    raise RuntimeError("connection closed after %d responses" % i)
                buf += data


def complete(buf):
    # A whole response: its head and the Content-Length bytes after it.
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = re.search(rb"(?im)^content-length: *(\d+)", buf[:end])
    return length is not None and len(buf) >= end + 4 + int(length.group(1))


def callgrind_total(script, n, extra, tree, seed, drive=None, timeout=120):
    """callgrind's instruction total for ``python -c SCRIPT N PORTFILE EXTRA``
    run on *tree*'s ``python`` directory (and benches/), with ``drive(n,
    portfile)`` run meanwhile when given (the client; SCRIPT writes its port
    to PORTFILE and exits when done)."""
    with tempfile.TemporaryDirectory() as tmp:
        portfile = os.path.join(tmp, "port")
        out = os.path.join(tmp, "callgrind.out")
        # One hash seed for both counts of a round (and for every tree): str
        # hashes decide how many probes each dict lookup takes, and a start-up
        # under another seed differs by more than a request costs.
        benches = os.path.dirname(os.path.abspath(__file__))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tree, benches]),
            "PYTHONHASHSEED": str(seed),
        }
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
            + [sys.executable, "-c", script, str(n), portfile, extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if drive is not None:
                drive(n, portfile)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(out) as f:
            match = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
        return int(match.group(1))


def instructions(tree, n, pause, seed, kind):
    return callgrind_total(
        SERVER, n, kind, tree, seed, drive=lambda n, portfile: client(n, portfile, pause)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="python directories to compare")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n1", type=int, default=200)
    parser.add_argument("--n2", type=int, default=1200)
    parser.add_argument("--app", choices=["hello", "flask"], default="hello")
    parser.add_argument("--pause", type=float, default=0.006, help="seconds between requests")
    args = parser.parse_args()
    for r in range(args.rounds):
        for tree in args.trees:
            low = instructions(tree, args.n1, args.pause, r + 1, args.app)
            high = instructions(tree, args.n2, args.pause, r + 1, args.app)
            per = (high - low) / (args.n2 - args.n1)
            print("round %d  %-40s %8.0f instructions per request" % (r + 1, tree, per))


if __name__ == "__main__":
    main()
