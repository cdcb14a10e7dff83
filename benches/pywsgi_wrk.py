"""wrk against greenwheel.pywsgi and gevent.pywsgi, in one run.

Each server runs a hello-world WSGI app (access log off) in its own child
process on a loopback port; wrk (``apt-get install wrk``) loads one at a time.

    python benches/pywsgi_wrk.py [--duration 5] [--connections 100] [--threads 2]

Prints requests/s and latency for each, plus a single-connection run that
shows the per-request round trip (Nagle / delayed-ACK stalls show up there
as ~40 ms).
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(os.path.dirname(HERE), "python")

SERVER = r"""
import sys
impl, port = sys.argv[1], int(sys.argv[2])
if impl == "greenwheel":
    sys.path.insert(0, sys.argv[3])
    from greenwheel.pywsgi import WSGIServer
else:
    from gevent.pywsgi import WSGIServer

BODY = b"Hello, World!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]

WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: %s" % proc.stderr.read().decode())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while s.recv(4096):
                    pass
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def run_wrk(wrk, port, threads, connections, duration):
    out = subprocess.run(
        [
            wrk,
            "-t%d" % threads,
            "-c%d" % connections,
            "-d%ds" % duration,
            "--latency",
            "http://127.0.0.1:%d/" % port,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = re.search(r"Latency\s+([\d.]+\w+)", out).group(1)
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    return rps, latency, errors.group(0) if errors else ""


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--impl", action="append", choices=["greenwheel", "gevent"])
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    results = {}
    for impl in args.impl or ["greenwheel", "gevent"]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, impl, str(port), PYTHON_DIR],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_ready(port, proc)
            many = run_wrk(wrk, port, args.threads, args.connections, args.duration)
            one = run_wrk(wrk, port, 1, 1, min(args.duration, 3))
            results[impl] = (many, one)
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        "%-11s %14s %10s   %14s %10s"
        % ("server", "req/s (-c%d)" % args.connections, "latency", "req/s (-c1)", "latency")
    )
    for impl, ((rps, lat, err), (rps1, lat1, err1)) in results.items():
        print(
            "%-11s %14.0f %10s   %14.0f %10s %s"
            % (impl, rps, lat, rps1, lat1, (err + " " + err1).strip())
        )
    if len(results) == 2:
        print(
            "speed-up: %.1fx (-c%d), %.1fx (-c1)"
            % (
                results["greenwheel"][0][0] / results["gevent"][0][0],
                args.connections,
                results["greenwheel"][1][0] / results["gevent"][1][0],
            )
        )


if __name__ == "__main__":
    main()
