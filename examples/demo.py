"""greenwheel live demo: thousands of greenlets on one thread, driven by the Rust loop.

Run with ``make demo``. Everything happens on loopback; it prints what it did
and exits non-zero if anything went wrong.
"""

import sys
import threading
import time
import urllib.request

import greenwheel
from greenwheel import Timeout, socket
from greenwheel.event import Event
from greenwheel.pool import Pool
from greenwheel.queue import Queue
from greenwheel.pywsgi import WSGIServer
from greenwheel.server import StreamServer
from greenwheel.threadpool import ThreadPool

CLIENTS = 500
MESSAGES = 20
SLEEPERS = 10_000


def echo(sock, address):
    # A plain blocking-style handler: each connection is its own greenlet.
    with sock:
        while True:
            data = sock.recv(4096)
            if not data:
                return
            sock.sendall(data)


def client(port, n):
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for i in range(MESSAGES):
            msg = b"greenlet %d message %d\n" % (n, i)
            conn.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += conn.recv(4096)
            assert got == msg, (got, msg)
    return MESSAGES


def demo_echo():
    server = StreamServer(("127.0.0.1", 0), echo)
    server.start()
    t0 = time.perf_counter()
    clients = [greenwheel.spawn(client, server.server_port, n) for n in range(CLIENTS)]
    greenwheel.joinall(clients, raise_error=True)
    dt = time.perf_counter() - t0
    server.stop()
    total = sum(c.value for c in clients)
    print(f"echo server : {CLIENTS} concurrent clients, {total} round trips in {dt:.2f}s "
          f"({total / dt:,.0f} round trips/s) on one thread")
    return total == CLIENTS * MESSAGES


def demo_sleepers():
    woke = []
    t0 = time.perf_counter()

    def sleeper(i):
        delay = (i % 50) / 1000.0
        start = time.monotonic()
        greenwheel.sleep(delay)
        late = time.monotonic() - start - delay
        woke.append(late)

    greenwheel.joinall([greenwheel.spawn(sleeper, i) for i in range(SLEEPERS)])
    dt = time.perf_counter() - t0
    early = sum(1 for late in woke if late < 0)
    woke.sort()
    median, p99 = woke[len(woke) // 2], woke[int(len(woke) * 0.99)]
    # Lateness includes waiting for the thousands of greenlets due at the
    # same moment to run first: one thread does all the work.
    print(f"timer wheel : {SLEEPERS} greenlets slept 0-49 ms each, all woke in {dt:.2f}s, "
          f"{early} woke early, lateness median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    return early == 0 and len(woke) == SLEEPERS


def demo_timeout_and_pool():
    with Timeout(0.05, False):
        greenwheel.sleep(10)  # abandoned silently after 50 ms
    pool = Pool(50)
    squares = list(pool.imap(lambda x: (greenwheel.sleep(0.001), x * x)[1], range(1000)))
    ok = squares == [x * x for x in range(1000)]
    print(f"pool+timeout: Timeout(0.05, False) cut a 10 s sleep short; Pool(50).imap "
          f"squared 1000 numbers in order: {ok}")
    return ok


def demo_threads():
    # Real OS threads hand work to greenlets through the loop's thread-safe wake-up.
    done = Event()
    q = Queue()

    def producer():
        for i in range(1000):
            q.put(i)
        done.set()

    threading.Thread(target=producer).start()
    done.wait(timeout=10)
    got = [q.get(timeout=10) for _ in range(1000)]
    ok = got == list(range(1000))
    print(f"threads     : an OS thread put 1000 items on a greenwheel Queue and set an "
          f"Event; the greenlet got them all in order: {ok}")
    return ok


def hello_app(environ, start_response):
    body = b"hello from greenwheel, path=" + environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def demo_wsgi():
    # The WSGI server runs on the loop; blocking urllib clients run in real OS
    # threads of a greenwheel ThreadPool, which hands results back to us.
    server = WSGIServer(("127.0.0.1", 0), hello_app, log=None)
    server.start()
    url = "http://127.0.0.1:%d/item/" % server.server_port

    def fetch(n):
        with urllib.request.urlopen(url + str(n), timeout=10) as resp:
            return resp.read()

    t0 = time.perf_counter()
    pool = ThreadPool(8)
    bodies = list(pool.imap(fetch, range(200)))
    dt = time.perf_counter() - t0
    pool.kill()
    server.stop()
    ok = bodies == [b"hello from greenwheel, path=/item/%d" % n for n in range(200)]
    print(f"wsgi        : 8 OS threads made 200 urllib requests to a greenwheel WSGIServer in "
          f"{dt:.2f}s, all answered correctly: {ok}")
    return ok


def main():
    print(f"greenwheel {greenwheel.__version__}: gevent-style greenlets on a Rust timer wheel "
          f"and epoll loop")
    results = [demo_echo(), demo_sleepers(), demo_timeout_and_pool(), demo_threads(), demo_wsgi()]
    if not all(results):
        print("demo FAILED", file=sys.stderr)
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
