"""CPU per request of the http_stream server (greenwheel StreamServer).

Runs benches/workloads.py's blocking-style ``_http_handler`` under
greenwheel's StreamServer in a child process, drives N keep-alive requests
over one connection, one at a time, and prints the child's CPU time per
request (user+sys from /proc).  Usage:
    PYTHONPATH=TREE/python python3 benches/stream_profile.py [N]
"""

import os
import socket
import subprocess
import sys
import time

CHILD = """
import sys
sys.path.insert(0, {benches!r})
import greenwheel
from greenwheel.server import StreamServer
from greenwheel import socket as gsocket
import workloads
listener = gsocket.socket()
listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
server = StreamServer(listener, workloads._http_handler)
server.start()
print(listener.getsockname()[1], flush=True)
server.serve_forever()
"""

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    benches = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(benches=benches)], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):  # warm up
            conn.sendall(REQUEST)
            conn.recv(65536)
        cpu0, t0 = cpu_seconds(child.pid), time.perf_counter()
        for _ in range(n):
            conn.sendall(REQUEST)
            conn.recv(65536)
        cpu1, t1 = cpu_seconds(child.pid), time.perf_counter()
        conn.close()
        print(
            f"{n} requests: server CPU {(cpu1 - cpu0) / n * 1e6:.2f} us/request, "
            f"wall {(t1 - t0) / n * 1e6:.2f} us/request"
        )
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
