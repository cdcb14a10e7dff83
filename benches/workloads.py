"""The workloads of ``benches/compare.py``, and the child process that runs one.

``compare.py`` runs every (workload, library) pair in a fresh process::

    python benches/workloads.py run WORKLOAD LIB [--quick]

which prints exactly one JSON line: ``{"value": ..., "details": {...}}`` or
``{"skip": "why"}``.  A fresh process per pair means no library ever sees
another one's imports, monkey state, GC heap, allocator arenas or loop caches.
It is also the handy way to profile a single workload by hand.

Every workload has up to three implementations, one per API family:

* ``gevent``: runs on greenwheel *and* gevent.  It receives the imported
  top-level package as ``g`` and only uses the API the two share, so the
  very same lines of code are measured on both;
* ``eventlet``: eventlet's own API;
* ``asyncio``: a coroutine, run on asyncio's default loop, uvloop or rloop.

A missing implementation means "does not apply" (asyncio has no WSGI
server); a library that lacks a module the workload needs (greenwheel.event
while it is being written) makes the implementation raise :class:`Skip`, and
so does an API a library leaves unimplemented (``NotImplementedError``).
granian, an HTTP server, has a family of its own with only WSGI servers.

The HTTP workloads are different: the server runs in yet another process
(``workloads.py serve KIND LIB``) and wrk hammers it, so the measuring child
only drives those two processes and never imports the library itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import importlib.util
import io
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from wsgi_apps import HELLO_BODY, hello_app, is_flask_body, make_flask_app  # noqa: E402

#: Which implementation each library runs.
FAMILY = {
    "greenwheel": "gevent",
    "gevent": "gevent",
    "eventlet": "eventlet",
    "asyncio": "asyncio",
    "uvloop": "asyncio",
    "rloop": "asyncio",
    # greenwheel's asyncio event loop (issue 18): the asyncio implementations
    # on greenwheel's Rust loop.
    "greenwheel.asyncio": "asyncio",
    # Bare greenlets, no scheduler: the floor of the memory rows (issue 19
    # measures greenwheel's parked greenlet against it).
    "greenlet": "greenlet",
    # granian is a server, not a concurrency library: it only has HTTP rows.
    "granian": "granian",
}

#: The asyncio-family libraries that replace asyncio's event loop.
LOOP_FACTORIES = ("uvloop", "rloop", "greenwheel.asyncio")


class Skip(Exception):
    """The library cannot run this workload (missing module, no such API)."""


@dataclass(frozen=True)
class Params:
    """Run-size knobs shared by every workload."""

    quick: bool = False

    @property
    def duration(self) -> float:
        """Seconds a time-bounded workload keeps measuring."""
        return 0.2 if self.quick else 1.0

    def size(self, normal: int) -> int:
        """A fixed work size, cut tenfold for ``--quick`` smoke runs."""
        return max(1, normal // 10) if self.quick else normal


@dataclass
class Workload:
    """One row of the comparison table."""

    name: str
    title: str
    unit: str
    lower_is_better: bool = False
    gevent: Callable[..., Any] | None = None
    eventlet: Callable[..., Any] | None = None
    asyncio: Callable[..., Any] | None = None
    greenlet: Callable[..., Any] | None = None
    #: Runs instead of the per-family implementations (out-of-process workloads).
    driver: Callable[..., Any] | None = None
    #: Extra keyword arguments for the implementations (sizes of a variant).
    args: dict[str, Any] = field(default_factory=dict)
    #: One line printed under the table: what exactly is measured, if not obvious.
    note: str = ""

    def implementation(self, lib: str) -> Callable[..., Any] | None:
        return getattr(self, FAMILY[lib], None)


WORKLOADS: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    WORKLOADS[workload.name] = workload
    return workload


# --- helpers -------------------------------------------------------------------

#: Operations done between two looks at the clock (and two yields to the loop).
BATCH = 1000


def _noop(*_args):
    pass


async def _anoop():
    pass


class Stopwatch:
    """Elapsed time of the fixed-size workloads."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def result(value: float, **details: Any) -> dict[str, Any]:
    return {"value": value, "details": details}


#: Windows a time-bounded run is cut into (see :class:`Meter`).
WINDOWS = 5


class Meter:
    """The rate of a time-bounded loop, robust to a busy machine.

    The run is cut into :data:`WINDOWS` consecutive windows and the best
    window's rate is the result: another process taking the CPU for a moment
    spoils one window, not the number.  Every window's rate is kept in the
    details, so a noisy run shows.
    """

    def __init__(self, duration: float):
        self.window = duration / WINDOWS
        self.rates: list[float] = []
        self.total = 0
        self._ops = 0
        self._since = time.perf_counter()

    def running(self) -> bool:
        return len(self.rates) < WINDOWS

    def add(self, ops: int) -> None:
        """Count *ops* done since the last call; closes the window if it is over."""
        self._ops += ops
        self.total += ops
        now = time.perf_counter()
        if now - self._since >= self.window:
            self.rates.append(self._ops / (now - self._since))
            self._ops, self._since = 0, now

    def result(self, **details: Any) -> dict[str, Any]:
        windows = [round(rate) for rate in self.rates]
        return result(max(self.rates), ops=self.total, window_rates=windows, **details)


def submodule(g, name: str):
    """``g.<name>`` (e.g. greenwheel.event), or :class:`Skip` if it does not exist (yet)."""
    try:
        return importlib.import_module(f"{g.__name__}.{name}")
    except ImportError as exc:
        raise Skip(f"{g.__name__}.{name} not available ({exc})") from None


def rss_bytes() -> int:
    # Second field of statm: resident pages.  Cheaper and more direct than
    # tracemalloc, and it also sees what C extensions allocate.
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: Listen backlog where the API lets us choose it.  eventlet's default (50)
#: is below the 100 connections that arrive at once, and an overflowing
#: accept queue costs a 1 s SYN retransmit: we would measure the backlog.
BACKLOG = 1024


def nodelay(sock) -> None:
    # Nagle + delayed ACK would make the request/response ping-pong measure
    # TCP timers instead of the event loop.  asyncio sets this by default;
    # the others get it explicitly so every library plays by the same rules.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listening_socket(socket_module, tcp_nodelay: bool = True):
    """A loopback listener, made the same way for every gevent-style server.

    Linux copies TCP_NODELAY from a listener to the sockets it accepts, which
    is the one way to set it on sockets that a library's own server accepts
    (pywsgi's).  The backlog is ours too, so no library is measured on its
    default accept queue.
    """
    sock = socket_module.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if tcp_nodelay:
        nodelay(sock)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    return sock


def recv_exactly(sock, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise EOFError("peer closed the connection")
        got += len(chunk)


# --- 1. sleep(0) yield rate ------------------------------------------------------

YIELDERS = 100


# Every yielder bumps one shared counter; the main greenlet reads it once per
# window while it sleeps on a timer, so the yielders have the loop to themselves.


def sleep0_gevent(g, p):
    stop, counter = [], [0]
    g.sleep(0)  # create the hub outside the measured interval

    def yielder():
        while not stop:
            g.sleep(0)
            counter[0] += 1

    workers = [g.spawn(yielder) for _ in range(YIELDERS)]
    meter = Meter(p.duration)
    while meter.running():
        before = counter[0]
        g.sleep(meter.window)
        meter.add(counter[0] - before)
    stop.append(True)
    g.joinall(workers)
    return meter.result()


def sleep0_eventlet(eventlet, p):
    stop, counter = [], [0]

    def yielder():
        while not stop:
            eventlet.sleep(0)
            counter[0] += 1

    workers = [eventlet.spawn(yielder) for _ in range(YIELDERS)]
    meter = Meter(p.duration)
    while meter.running():
        before = counter[0]
        eventlet.sleep(meter.window)
        meter.add(counter[0] - before)
    stop.append(True)
    for worker in workers:
        worker.wait()
    return meter.result()


async def sleep0_asyncio(aio, p):
    stop, counter = [], [0]

    async def yielder():
        while not stop:
            await aio.sleep(0)
            counter[0] += 1

    workers = [aio.create_task(yielder()) for _ in range(YIELDERS)]
    meter = Meter(p.duration)
    while meter.running():
        before = counter[0]
        await aio.sleep(meter.window)
        meter.add(counter[0] - before)
    stop.append(True)
    await aio.gather(*workers)
    return meter.result()


register(
    Workload(
        "sleep0",
        f"sleep(0) yields, {YIELDERS} greenlets",
        "yields/s",
        gevent=sleep0_gevent,
        eventlet=sleep0_eventlet,
        asyncio=sleep0_asyncio,
    )
)


# --- 2. spawn + joinall -------------------------------------------------------------

SPAWNS = 200_000


def spawn_gevent(g, p):
    n = p.size(SPAWNS)
    g.sleep(0)
    watch = Stopwatch()
    g.joinall([g.spawn(_noop) for _ in range(n)])
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


def spawn_eventlet(eventlet, p):
    n = p.size(SPAWNS)
    eventlet.sleep(0)
    watch = Stopwatch()
    # eventlet has no joinall: waiting on each in turn is its idiom.
    for thread in [eventlet.spawn(_noop) for _ in range(n)]:
        thread.wait()
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


async def spawn_asyncio(aio, p):
    n = p.size(SPAWNS)
    watch = Stopwatch()
    await aio.gather(*[aio.create_task(_anoop()) for _ in range(n)])
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


register(
    Workload(
        "spawn_join",
        f"spawn + joinall, {SPAWNS // 1000}k greenlets",
        "greenlets/s",
        gevent=spawn_gevent,
        eventlet=spawn_eventlet,
        asyncio=spawn_asyncio,
    )
)


# --- 3. Timeout start + cancel ---------------------------------------------------
#
# The time-bounded loops yield to the event loop after every batch: libraries
# that cancel lazily (asyncio, eventlet) only reclaim cancelled entries when
# their loop runs, and a real program's loop does run.


def timeout_gevent(g, p):
    Timeout = g.Timeout
    g.sleep(0)
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(BATCH):
            t = Timeout(10)
            t.start()
            t.cancel()
        g.sleep(0)
        meter.add(BATCH)
    return meter.result()


def timeout_eventlet(eventlet, p):
    Timeout = eventlet.Timeout
    eventlet.sleep(0)
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(BATCH):
            t = Timeout(10)  # eventlet's Timeout starts on construction
            t.cancel()
        eventlet.sleep(0)
        meter.add(BATCH)
    return meter.result()


async def timeout_asyncio(aio, p):
    meter = Meter(p.duration)
    if hasattr(aio, "timeout"):  # Python 3.11+
        timeout = aio.timeout
        while meter.running():
            for _ in range(BATCH):
                async with timeout(10):
                    pass
            await aio.sleep(0)
            meter.add(BATCH)
    else:  # the same timer handle that asyncio.timeout() would arm and cancel
        loop = aio.get_running_loop()
        while meter.running():
            for _ in range(BATCH):
                loop.call_later(10, _noop).cancel()
            await aio.sleep(0)
            meter.add(BATCH)
    return meter.result()


register(
    Workload(
        "timeout",
        "Timeout start + cancel",
        "ops/s",
        gevent=timeout_gevent,
        eventlet=timeout_eventlet,
        asyncio=timeout_asyncio,
    )
)


# --- 4. timer arm + cancel with many timers pending ---------------------------------
#
# `pending` background timers are armed first, due 1-60 minutes out so none
# fires while we measure.  Each measured op then arms and cancels one timer
# whose deadline is drawn from the same range, so it lands among the pending
# ones rather than always in front of them.  Comparing the per-op cost at 10k
# and 1M pending shows how the timer structure scales.

TIMER_POOL = 1024  # distinct deadlines cycled through by the measured ops


def _deadlines(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(60.0, 3600.0) for _ in range(count)]


def timers_gevent(g, p, pending):
    pending = p.size(pending)
    loop = g.get_hub().loop
    background = [loop.timer(after) for after in _deadlines(pending, 1)]
    for t in background:
        t.start(_noop)
    # Watchers are reusable: arming an existing one is the pure timer-structure
    # cost, which is what this workload is after.
    pool = [loop.timer(after) for after in _deadlines(TIMER_POOL, 2)]
    g.sleep(0)
    meter = Meter(p.duration)
    while meter.running():
        for t in pool:
            t.start(_noop)
            t.stop()
        g.sleep(0)
        meter.add(TIMER_POOL)
    return meter.result(pending=pending)


def timers_eventlet(eventlet, p, pending):
    pending = p.size(pending)
    hub = submodule(eventlet, "hubs").get_hub()
    background = [hub.schedule_call_global(after, _noop) for after in _deadlines(pending, 1)]
    eventlet.sleep(0)  # eventlet moves new timers into its heap on the next loop pass
    pool = _deadlines(TIMER_POOL, 2)
    meter = Meter(p.duration)
    while meter.running():
        for after in pool:
            hub.schedule_call_global(after, _noop).cancel()
        eventlet.sleep(0)
        meter.add(TIMER_POOL)
    del background
    return meter.result(pending=pending)


async def timers_asyncio(aio, p, pending):
    pending = p.size(pending)
    loop = aio.get_running_loop()
    background = [loop.call_later(after, _noop) for after in _deadlines(pending, 1)]
    pool = _deadlines(TIMER_POOL, 2)
    await aio.sleep(0)
    meter = Meter(p.duration)
    while meter.running():
        for after in pool:
            loop.call_later(after, _noop).cancel()
        await aio.sleep(0)
        meter.add(TIMER_POOL)
    del background
    return meter.result(pending=pending)


for _suffix, _pending in (("10k", 10_000), ("1m", 1_000_000)):
    register(
        Workload(
            f"timer_{_suffix}",
            f"timer arm + cancel, {_suffix.upper()} pending",
            "ops/s",
            gevent=timers_gevent,
            eventlet=timers_eventlet,
            asyncio=timers_asyncio,
            args={"pending": _pending},
            note="one start+stop of a reused watcher (asyncio: call_later().cancel()) among"
            " N timers pending 1-60 min out",
        )
    )


# --- 5. staggered sleepers -----------------------------------------------------------

SLEEPERS = 200_000


def _stagger(i: int) -> float:
    return (i % 51) / 1000.0  # 0..50 ms


def staggered_gevent(g, p):
    n = p.size(SLEEPERS)
    g.sleep(0)
    watch = Stopwatch()
    g.joinall([g.spawn(g.sleep, _stagger(i)) for i in range(n)])
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


def staggered_eventlet(eventlet, p):
    n = p.size(SLEEPERS)
    eventlet.sleep(0)
    watch = Stopwatch()
    for thread in [eventlet.spawn(eventlet.sleep, _stagger(i)) for i in range(n)]:
        thread.wait()
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


async def staggered_asyncio(aio, p):
    n = p.size(SLEEPERS)
    watch = Stopwatch()
    await aio.gather(*[aio.create_task(aio.sleep(_stagger(i))) for i in range(n)])
    elapsed = watch.elapsed()
    return result(n / elapsed, greenlets=n, seconds=elapsed)


register(
    Workload(
        "staggered",
        f"{SLEEPERS // 1000}k sleepers, staggered 0-50 ms",
        "greenlets/s",
        gevent=staggered_gevent,
        eventlet=staggered_eventlet,
        asyncio=staggered_asyncio,
    )
)


# --- 6. Event and Queue ping-pong --------------------------------------------------
#
# The main greenlet/task pings, a second one pongs; a round trip is two
# hand-offs through the primitive.


def event_pingpong_gevent(g, p):
    Event = submodule(g, "event").Event
    ping, pong, stop = Event(), Event(), []

    def ponger():
        while True:
            ping.wait()
            ping.clear()
            if stop:
                return
            pong.set()

    worker = g.spawn(ponger)
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(BATCH):
            ping.set()
            pong.wait()
            pong.clear()
        meter.add(BATCH)
    stop.append(True)
    ping.set()
    worker.join()
    return meter.result()


def event_pingpong_eventlet(eventlet, p):
    # eventlet's Event is one-shot: reset() re-arms it (and must follow a send).
    Event = submodule(eventlet, "event").Event
    ping, pong, stop = Event(), Event(), []

    def ponger():
        while True:
            ping.wait()
            ping.reset()
            if stop:
                return
            pong.send()

    worker = eventlet.spawn(ponger)
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(BATCH):
            ping.send()
            pong.wait()
            pong.reset()
        meter.add(BATCH)
    stop.append(True)
    ping.send()
    worker.wait()
    return meter.result()


async def event_pingpong_asyncio(aio, p):
    ping, pong, stop = aio.Event(), aio.Event(), []

    async def ponger():
        while True:
            await ping.wait()
            ping.clear()
            if stop:
                return
            pong.set()

    worker = aio.create_task(ponger())
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(BATCH):
            ping.set()
            await pong.wait()
            pong.clear()
        meter.add(BATCH)
    stop.append(True)
    ping.set()
    await worker
    return meter.result()


def queue_pingpong_gevent(g, p):
    Queue = submodule(g, "queue").Queue
    return _queue_pingpong_sync(Queue(), Queue(), g.spawn, lambda w: w.join(), p)


def queue_pingpong_eventlet(eventlet, p):
    Queue = submodule(eventlet, "queue").Queue
    return _queue_pingpong_sync(Queue(), Queue(), eventlet.spawn, lambda w: w.wait(), p)


def _queue_pingpong_sync(requests, replies, spawn, join, p):
    def ponger():
        while True:
            item = requests.get()
            if item is None:
                return
            replies.put(item)

    worker = spawn(ponger)
    meter = Meter(p.duration)
    while meter.running():
        for i in range(1, BATCH + 1):
            requests.put(i)
            replies.get()
        meter.add(BATCH)
    requests.put(None)
    join(worker)
    return meter.result()


async def queue_pingpong_asyncio(aio, p):
    requests, replies = aio.Queue(), aio.Queue()

    async def ponger():
        while True:
            item = await requests.get()
            if item is None:
                return
            await replies.put(item)

    worker = aio.create_task(ponger())
    meter = Meter(p.duration)
    while meter.running():
        for i in range(1, BATCH + 1):
            await requests.put(i)
            await replies.get()
        meter.add(BATCH)
    await requests.put(None)
    await worker
    return meter.result()


register(
    Workload(
        "event_pingpong",
        "Event set/wait ping-pong",
        "round trips/s",
        gevent=event_pingpong_gevent,
        eventlet=event_pingpong_eventlet,
        asyncio=event_pingpong_asyncio,
    )
)
register(
    Workload(
        "queue_pingpong",
        "Queue put/get ping-pong",
        "round trips/s",
        gevent=queue_pingpong_gevent,
        eventlet=queue_pingpong_eventlet,
        asyncio=queue_pingpong_asyncio,
    )
)


# --- 7. TCP echo ---------------------------------------------------------------------

ECHO_CLIENTS = 100
ECHO_TRIPS = 300  # per client
ECHO_MESSAGE = b"x" * 64


def _echo_handler(sock, _address):
    nodelay(sock)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)
    finally:
        sock.close()


def _echo_client(connect, address, trips):
    conn = connect(address)
    nodelay(conn)
    try:
        for _ in range(trips):
            conn.sendall(ECHO_MESSAGE)
            recv_exactly(conn, len(ECHO_MESSAGE))
    finally:
        conn.close()


def tcp_echo_gevent(g, p):
    gsocket = submodule(g, "socket")
    StreamServer = submodule(g, "server").StreamServer
    trips = p.size(ECHO_TRIPS)
    listener = listening_socket(gsocket)
    address = listener.getsockname()
    server = StreamServer(listener, _echo_handler)
    server.start()
    watch = Stopwatch()
    clients = [
        g.spawn(_echo_client, gsocket.create_connection, address, trips)
        for _ in range(ECHO_CLIENTS)
    ]
    g.joinall(clients, raise_error=True)
    elapsed = watch.elapsed()
    server.stop()
    total = ECHO_CLIENTS * trips
    return result(total / elapsed, round_trips=total, seconds=elapsed)


def tcp_echo_eventlet(eventlet, p):
    trips = p.size(ECHO_TRIPS)
    listener = eventlet.listen(("127.0.0.1", 0), backlog=BACKLOG)
    server = eventlet.spawn(eventlet.serve, listener, _echo_handler)
    address = listener.getsockname()
    watch = Stopwatch()
    clients = [
        eventlet.spawn(_echo_client, eventlet.connect, address, trips) for _ in range(ECHO_CLIENTS)
    ]
    for client in clients:
        client.wait()
    elapsed = watch.elapsed()
    server.kill()
    total = ECHO_CLIENTS * trips
    return result(total / elapsed, round_trips=total, seconds=elapsed)


async def tcp_echo_asyncio(aio, p):
    trips = p.size(ECHO_TRIPS)

    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def client(port):
        reader, writer = await aio.open_connection("127.0.0.1", port)
        for _ in range(trips):
            writer.write(ECHO_MESSAGE)
            await reader.readexactly(len(ECHO_MESSAGE))
        writer.close()

    server = await aio.start_server(handle, "127.0.0.1", 0, backlog=BACKLOG)
    port = server.sockets[0].getsockname()[1]
    watch = Stopwatch()
    await aio.gather(*[client(port) for _ in range(ECHO_CLIENTS)])
    elapsed = watch.elapsed()
    server.close()
    total = ECHO_CLIENTS * trips
    return result(total / elapsed, round_trips=total, seconds=elapsed)


async def tcp_echo_protocol_asyncio(aio, p):
    """tcp_echo with asyncio Protocols on both sides instead of streams."""
    trips = p.size(ECHO_TRIPS)
    loop = aio.get_running_loop()

    class Echo(aio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    class Client(aio.Protocol):
        def __init__(self, done):
            self.done, self.left, self.pending = done, trips, 0

        def connection_made(self, transport):
            self.transport = transport
            self._send()

        def _send(self):
            self.pending = len(ECHO_MESSAGE)
            self.transport.write(ECHO_MESSAGE)

        def data_received(self, data):
            self.pending -= len(data)
            if self.pending > 0:
                return
            self.left -= 1
            if self.left:
                self._send()
            else:
                self.transport.close()
                self.done.set_result(None)

    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=BACKLOG)
    port = server.sockets[0].getsockname()[1]
    watch = Stopwatch()
    done = [loop.create_future() for _ in range(ECHO_CLIENTS)]
    for future in done:
        await loop.create_connection(lambda future=future: Client(future), "127.0.0.1", port)
    await aio.gather(*done)
    elapsed = watch.elapsed()
    server.close()
    total = ECHO_CLIENTS * trips
    return result(total / elapsed, round_trips=total, seconds=elapsed)


register(
    Workload(
        "tcp_echo",
        f"TCP echo, {ECHO_CLIENTS} clients x 64 B",
        "round trips/s",
        gevent=tcp_echo_gevent,
        eventlet=tcp_echo_eventlet,
        asyncio=tcp_echo_asyncio,
    )
)

register(
    Workload(
        "tcp_echo_protocol",
        f"TCP echo with Protocols, {ECHO_CLIENTS} clients x 64 B",
        "round trips/s",
        asyncio=tcp_echo_protocol_asyncio,
        note="asyncio family only: Protocols on both sides (tcp_echo uses streams)",
    )
)


# --- 8. HTTP keep-alive under wrk ---------------------------------------------------------
#
# Servers: a StreamServer whose blocking-style handler counts complete requests
# (GET, no body: each ends with a blank line) and answers each with a fixed
# keep-alive response (asyncio: a Protocol doing the same); and WSGI
# applications (benches/wsgi_apps.py) on the library's WSGI server, or on
# granian (a Rust HTTP server running the same WSGI application).

HTTP_BODY = HELLO_BODY
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
    len(HTTP_BODY),
    HTTP_BODY,
)
REQUEST_END = b"\r\n\r\n"


def complete_requests(buffer: bytes) -> tuple[int, bytes]:
    """Count the whole requests in *buffer*; return that and the unfinished tail."""
    count = buffer.count(REQUEST_END)
    if count:
        buffer = buffer[buffer.rindex(REQUEST_END) + len(REQUEST_END) :]
    return count, buffer


def _http_handler(sock, _address):
    nodelay(sock)
    pending = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            count, pending = complete_requests(pending + data)
            if count:  # answers pipelined requests too
                sock.sendall(HTTP_RESPONSE * count)
    finally:
        sock.close()


def wsgi_app(name: str):
    """The WSGI application a server kind serves: ``hello`` or ``flask``."""
    if name != "flask":
        return hello_app
    try:
        return make_flask_app()
    except ImportError as exc:
        raise Skip(f"Flask not installed ({exc})") from None


def tls_files(tls_dir: str) -> tuple[str, str]:
    """(certificate, key) in a directory made by :func:`self_signed_cert`."""
    return os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")


# Every server gets TCP_NODELAY unless the variant asks for the server's own
# default: gevent's pywsgi writes headers and body with two send() calls, and
# without TCP_NODELAY every keep-alive response then waits ~40 ms for the
# client's delayed ACK (Nagle), which would measure a TCP timer, not a server.


def serve_stream_gevent(g, announce, tcp_nodelay):
    StreamServer = submodule(g, "server").StreamServer
    listener = listening_socket(submodule(g, "socket"), tcp_nodelay)
    server = StreamServer(listener, _http_handler)
    server.start()
    announce(listener.getsockname()[1])
    server.serve_forever()


def serve_wsgi_gevent(g, announce, tcp_nodelay, app="hello", tls_dir=None):
    WSGIServer = submodule(g, "pywsgi").WSGIServer
    listener = listening_socket(submodule(g, "socket"), tcp_nodelay)
    application = wsgi_app(app)
    tls = {}
    if tls_dir is not None:
        certfile, keyfile = tls_files(tls_dir)
        tls = {"certfile": certfile, "keyfile": keyfile}
    try:
        server = WSGIServer(listener, application, log=None, **tls)  # no access log
    except TypeError:  # a server without the ``log`` knob
        server = WSGIServer(listener, application, **tls)
    server.start()
    announce(listener.getsockname()[1])
    server.serve_forever()


def serve_wsgi_gunicorn(g, announce, tcp_nodelay):
    # The same hello world under ``gunicorn -w 1`` with the library's worker:
    # greenwheel's (greenwheel.gunicorn.Worker) or gevent's pywsgi worker that
    # ships with gunicorn (gevent_pywsgi).  Access log off, as in the
    # standalone rows.  gunicorn sets TCP_NODELAY on its listeners itself.
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError as exc:
        raise Skip(f"gunicorn not installed ({exc})") from None
    worker = "greenwheel.gunicorn.Worker" if g.__name__ == "greenwheel" else "gevent_pywsgi"
    port = free_port()

    class HelloApp(BaseApplication):
        def load_config(self):
            for key, value in {
                "bind": f"127.0.0.1:{port}",
                "workers": 1,
                "worker_class": worker,
                "worker_connections": 1000,
                "backlog": BACKLOG,
                "accesslog": None,
                "graceful_timeout": 2,
                "control_socket_disable": True,
                # Called in the master once the listener is bound, before the
                # worker starts: connections wait in the backlog until the
                # worker accepts them.
                "when_ready": lambda _arbiter: announce(port),
            }.items():
                self.cfg.set(key, value)

        def load(self):
            return hello_app

    HelloApp().run()


def _eventlet_listener(eventlet, tcp_nodelay):
    listener = eventlet.listen(("127.0.0.1", 0), backlog=BACKLOG)
    if tcp_nodelay:
        nodelay(listener)
    return listener


def serve_stream_eventlet(eventlet, announce, tcp_nodelay):
    listener = _eventlet_listener(eventlet, tcp_nodelay)
    announce(listener.getsockname()[1])
    eventlet.serve(listener, _http_handler)


def serve_wsgi_eventlet(eventlet, announce, tcp_nodelay):
    wsgi = submodule(eventlet, "wsgi")
    listener = _eventlet_listener(eventlet, tcp_nodelay)
    announce(listener.getsockname()[1])
    wsgi.server(listener, hello_app, log_output=False)


class _HTTPProtocol(asyncio.Protocol):
    """The StreamServer handler as an asyncio Protocol: the fastest asyncio server.

    No streams layer (StreamReader/Writer and a task per connection) between
    the loop and the bytes: what uvloop's and rloop's own benchmarks serve.
    Responses are small and wrk waits for each, so no write backpressure.
    """

    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        count, self.pending = complete_requests(self.pending + data)
        if count:
            self.transport.write(HTTP_RESPONSE * count)


async def serve_stream_asyncio(aio, announce, tcp_nodelay):
    # asyncio turns TCP_NODELAY on for every TCP transport, whatever we ask.
    loop = aio.get_running_loop()
    # start_serving=False, then serve_forever(): rloop 0.5.0 panics ("entered
    # unreachable code", event_loop.rs) on the first connection when
    # serve_forever() is awaited on a server that already serves.
    server = await loop.create_server(
        _HTTPProtocol, "127.0.0.1", 0, backlog=BACKLOG, start_serving=False
    )
    announce(server.sockets[0].getsockname()[1])
    await server.serve_forever()


#: granian's single-worker configurations; the HTTP rows run each and report the
#: best.  Its default WSGI setup allows up to 512 blocking threads running the
#: application; one thread spares the GIL hand-offs between them.
GRANIAN_CONFIGS = {
    "default": [],
    "blocking-threads-1": ["--blocking-threads", "1"],
}


def serve_wsgi_granian(_granian, announce, tcp_nodelay, app="hello", tls_dir=None, config=None):
    """``granian --interface wsgi --workers 1`` serving benches/wsgi_apps.py.

    This process only starts granian (a master and one worker process),
    waits until it answers, announces the port and waits; on SIGTERM (the
    end of :func:`http_server`) it stops granian and the worker.  granian
    sets its own socket options (``tcp_nodelay`` does not apply).
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--workers",
        "1",
        "--http",
        "1",  # as every other server here: HTTP/1.1 only, no h2 detection
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backlog",
        str(BACKLOG),
        "--no-access-log",
        "--log-level",
        "warning",
        "--working-dir",
        HERE,
        *{**GRANIAN_CONFIGS, **GRANIAN_IDLE_CONFIG}[config or "default"],
    ]
    if tls_dir is not None:
        certfile, keyfile = tls_files(tls_dir)
        command += ["--ssl-certificate", certfile, "--ssl-keyfile", keyfile]
    if app == "flask":
        command += ["--factory", "wsgi_apps:make_flask_app"]
    else:
        command.append("wsgi_apps:hello_app")
    # Same process group as this one: compare.py's kill of a hung child's
    # group reaches granian too.
    # SIGTERM unwinds through the finally below, which stops granian.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    granian = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    try:
        # The master binds before its worker runs: wait for a real answer.
        _wait_until_answering(port, tls_dir is not None, granian, timeout=60)
        announce(port)
        status = granian.wait()
        raise RuntimeError(f"granian exited with status {status}")
    finally:
        stop_process_tree(granian)


def free_port() -> int:
    # For servers that bind by themselves (granian, gunicorn): a port the
    # kernel just handed out and released.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_answering(port: int, tls: bool, process, timeout: float) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        conn = _http_connection(port, tls, timeout=5)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not answering on port {port} after {timeout} s"
                ) from None
            time.sleep(0.05)  # polling a real condition: the port answers
        finally:
            conn.close()


def _descendants(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:
        return []
    return children + [d for child in children for d in _descendants(child)]


def stop_process_tree(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM *process*, then SIGKILL it and whatever it started, if still there."""
    if process.poll() is not None:
        return
    # Found before the signal: once the master is gone its worker is reparented.
    family = _descendants(process.pid)
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


SERVERS = {
    "stream": {
        "gevent": serve_stream_gevent,
        "eventlet": serve_stream_eventlet,
        "asyncio": serve_stream_asyncio,
    },
    # asyncio ships no WSGI server, so it has no row here.
    "wsgi": {
        "gevent": serve_wsgi_gevent,
        "eventlet": serve_wsgi_eventlet,
        "granian": serve_wsgi_granian,
    },
    "flask": {
        "gevent": functools.partial(serve_wsgi_gevent, app="flask"),
        "granian": functools.partial(serve_wsgi_granian, app="flask"),
    },
    # The hello world over TLS (``--tls-dir``: a self-signed certificate).
    "wsgi_tls": {"gevent": serve_wsgi_gevent, "granian": serve_wsgi_granian},
    "gunicorn": {"gevent": serve_wsgi_gunicorn},
}

#: Kinds whose server speaks TLS.
TLS_KINDS = {"wsgi_tls"}
#: Configurations a library's server is run in, the best reported (see http_driver).
SERVER_CONFIGS = {"granian": tuple(GRANIAN_CONFIGS)}

WRK_CONNECTIONS = 100
WRK_THREADS = 2


def wrk_cpu_prefix() -> list[str]:
    """``taskset -c 0``: wrk runs on the first CPU only, so that the server
    under test never shares a core with its load generator.

    Unpinned, on this 2-core machine, where the scheduler put wrk's threads
    decided the rows more than the servers did: in one sitting the same
    uvloop server measured 147k and 176k req/s, and greenwheel's StreamServer
    led uvloop by 1.06x or trailed it by 0.90x from one run to the next.
    With wrk on CPU 0 the servers measure their capacity on a core of their
    own (the server is 100% busy and preempted about 100 times in 3 s,
    against 100k-150k times unpinned).  Empty where taskset is missing or
    there is one CPU: wrk then shares, as before.
    """
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return []
    return [taskset, "-c", "0"]


def _wait_for_port(server: subprocess.Popen, timeout: float) -> int:
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    line = server.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError("server did not announce a port")
    message = json.loads(line)
    if "skip" in message:
        raise Skip(message["skip"])
    return message["port"]


def _http_connection(port: int, tls: bool, timeout: float):
    import http.client

    if not tls:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    import ssl

    # The certificate is a throwaway self-signed one: encrypt, do not verify.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)


def _expected_body(kind: str) -> Callable[[bytes], bool]:
    return is_flask_body if kind == "flask" else HTTP_BODY.__eq__


def _check_http(port: int, kind: str = "wsgi", tls: bool = False) -> None:
    """Two requests on one connection: the server must be correct before it is fast."""
    conn = _http_connection(port, tls, timeout=10)
    good_body = _expected_body(kind)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200 or not good_body(body):
                raise RuntimeError(f"bad response: {reply.status} {body[:80]!r}")
            if reply.will_close:
                raise RuntimeError("the server closed a keep-alive connection")
    finally:
        conn.close()


def _parse_wrk(output: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rate:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    parsed: dict[str, Any] = {"requests_per_s": float(rate.group(1))}
    total = re.search(r"(\d+) requests in", output)
    if total:
        parsed["requests"] = int(total.group(1))
    errors = re.search(r"Socket errors: (.*)", output)
    if errors:
        parsed["socket_errors"] = errors.group(1).strip()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        parsed["non_2xx"] = int(non2xx.group(1))
    latency = re.search(r"Latency\s+(\S+)", output)
    if latency:
        parsed["latency_avg"] = latency.group(1)
    return parsed


@contextlib.contextmanager
def http_server(
    lib: str,
    kind: str,
    tcp_nodelay: bool = True,
    tls_dir: str | None = None,
    config: str | None = None,
):
    """A ``workloads.py serve KIND LIB`` child, checked; yields (port, pid)."""
    command = [sys.executable, os.path.abspath(__file__), "serve", kind, lib]
    if not tcp_nodelay:
        command.append("--no-nodelay")
    if tls_dir is not None:
        command += ["--tls-dir", tls_dir]
    if config is not None:
        command += ["--config", config]
    # stderr goes to a file: a server that logs every request must never
    # block on a full pipe nobody reads.
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            try:
                # granian starts two more processes and imports the app in
                # its worker before it answers: more time on a busy machine.
                port = _wait_for_port(server, timeout=90)
                _check_http(port, kind, tls_dir is not None)
            except (RuntimeError, OSError) as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; server stderr: {log.read()[-2000:]}") from None
            yield port, server.pid
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def run_wrk(wrk: str, port: int, seconds: int, tls: bool = False) -> dict[str, Any]:
    scheme = "https" if tls else "http"
    run = subprocess.run(
        [
            *wrk_cpu_prefix(),
            wrk,
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            f"-d{seconds}s",
            f"{scheme}://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed: {run.stderr or run.stdout}")
    return _parse_wrk(run.stdout)


def _need_server(lib: str, kind: str) -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise Skip("wrk not installed (apt-get install -y wrk)")
    if FAMILY[lib] not in SERVERS[kind]:
        raise Skip(f"{lib} has no {kind} server")
    # Checked here too: granian would only fail to load the app.
    if kind == "flask" and importlib.util.find_spec("flask") is None:
        raise Skip("Flask not installed (python -m pip install flask)")
    return wrk


@contextlib.contextmanager
def self_signed_cert():
    """A temporary directory holding a fresh self-signed cert.pem and key.pem."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise Skip("openssl not installed: no certificate for the TLS row")
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tls_dir:
        certfile, keyfile = tls_files(tls_dir)
        # OpenSSL 3 writes the key as PKCS#8, the one format granian reads.
        made = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
            + ["-days", "1", "-keyout", keyfile, "-out", certfile],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode != 0:
            raise RuntimeError(f"openssl req failed: {made.stderr}")
        yield tls_dir


def best_config(rates: dict[str | None, float]) -> str | None:
    """The configuration with the highest rate (the first one on a tie)."""
    return max(rates, key=lambda config: rates[config])


def http_driver(lib, p, kind, tcp_nodelay=True):
    """wrk against the library's server of *kind*.

    A library with several server configurations (granian: its default and
    one blocking thread) is measured in each, one after the other, and the
    best is the row's value: the peer at its best.  Which one won, and every
    configuration's rate, are in the details.
    """
    wrk = _need_server(lib, kind)
    seconds = 1 if p.quick else 3
    runs: dict[str | None, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tls_dir = stack.enter_context(self_signed_cert()) if kind in TLS_KINDS else None
        for config in SERVER_CONFIGS.get(FAMILY[lib], (None,)):
            with http_server(lib, kind, tcp_nodelay, tls_dir, config) as (port, _pid):
                runs[config] = run_wrk(wrk, port, seconds, tls=tls_dir is not None)
    best = best_config({config: run["requests_per_s"] for config, run in runs.items()})
    parsed = dict(runs[best])
    if best is not None:
        parsed["config"] = best
        parsed["rates_by_config"] = {c: round(r["requests_per_s"]) for c, r in runs.items()}
    return result(parsed.pop("requests_per_s"), **parsed)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process *pid* and its descendants so far."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:  # gone, or no /proc: counted as nothing
        return total
    return total + sum(cpu_seconds(child) for child in children)


def gunicorn_driver(lib, p):
    """gunicorn -w 1 with the library's worker, and the standalone server beside it.

    Both servers run at once (one idle while wrk loads the other) and take
    turns, in alternating order, so that both see the same moments of a
    shared, noisy machine.  The value is the best gunicorn rate (as in every
    row); ``vs_standalone`` is the median of the per-round ratios
    gunicorn / standalone, the number the worker's target reads.  The CPU
    time each server (gunicorn: master and worker) spent per request is
    reported too (``us_per_request``): on a busy machine it moves less than
    the rates do.
    """
    wrk = _need_server(lib, "gunicorn")
    seconds = 1 if p.quick else 2
    rounds = 2 if p.quick else 7
    rates: dict[str, list[float]] = {"gunicorn": [], "standalone": []}
    cpu: dict[str, list[float]] = {"gunicorn": [], "standalone": []}
    with (
        http_server(lib, "gunicorn") as (gunicorn_port, gunicorn_pid),
        http_server(lib, "wsgi") as (wsgi_port, wsgi_pid),
    ):
        servers = [("gunicorn", gunicorn_port, gunicorn_pid), ("standalone", wsgi_port, wsgi_pid)]
        for i in range(rounds):
            for name, port, pid in servers if i % 2 else servers[::-1]:
                before = cpu_seconds(pid)
                parsed = run_wrk(wrk, port, seconds)
                used = cpu_seconds(pid) - before
                rates[name].append(parsed["requests_per_s"])
                cpu[name].append(used / parsed.get("requests", 1) * 1e6)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    ratios = [g / s for g, s in zip(rates["gunicorn"], rates["standalone"], strict=True)]
    return result(
        max(rates["gunicorn"]),
        vs_standalone=round(median(ratios), 3),
        us_per_request={name: round(median(values), 2) for name, values in cpu.items()},
        gunicorn_rates=[round(r) for r in rates["gunicorn"]],
        standalone_rates=[round(r) for r in rates["standalone"]],
    )


register(
    Workload(
        "http_stream",
        f"HTTP keep-alive StreamServer, wrk -c{WRK_CONNECTIONS}",
        "req/s",
        driver=http_driver,
        args={"kind": "stream"},
    )
)
register(
    Workload(
        "http_wsgi",
        f"WSGI hello world, wrk -c{WRK_CONNECTIONS}",
        "req/s",
        driver=http_driver,
        args={"kind": "wsgi"},
    )
)
# The same app and server under gunicorn (one worker process): what the
# worker adds to the standalone server (compare.py checks greenwheel's worker
# against greenwheel's own http_wsgi row of the same run).
register(
    Workload(
        "http_wsgi_gunicorn",
        f"WSGI hello world, gunicorn -w 1, wrk -c{WRK_CONNECTIONS}",
        "req/s",
        driver=gunicorn_driver,
        note="gunicorn -w 1 with greenwheel.gunicorn.Worker, and gunicorn's gevent_pywsgi"
        " worker for gevent",
    )
)
# The same without TCP_NODELAY: what a WSGI server does out of the box.
register(
    Workload(
        "http_wsgi_nagle",
        f"WSGI hello world, wrk -c{WRK_CONNECTIONS}, no TCP_NODELAY",
        "req/s",
        driver=http_driver,
        args={"kind": "wsgi", "tcp_nodelay": False},
        note="the no-TCP_NODELAY row keeps each server's default; gevent's pywsgi then waits"
        " ~40 ms per response for a delayed ACK (it sends headers and body separately)",
    )
)
register(
    Workload(
        "http_flask",
        f"Flask app (one JSON route), wrk -c{WRK_CONNECTIONS}",
        "req/s",
        driver=http_driver,
        args={"kind": "flask"},
    )
)


def flask_alone_greenlet(_greenlet_module, p):
    """The Flask row's floor: the same application called in a loop in this
    process, with a fresh environ per call and its body joined and closed as
    a server would, but no server, no socket and no client."""
    app = make_flask_app()
    template = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status, headers, exc_info=None):
        return None

    def call():
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO()
        result = app(environ, start_response)
        try:
            return b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    if not is_flask_body(call()):
        raise RuntimeError("the Flask app did not answer its JSON")
    meter = Meter(p.duration)
    while meter.running():
        for _ in range(100):
            call()
        meter.add(100)
    return meter.result()


register(
    Workload(
        "flask_alone",
        "Flask app alone, called in a loop (no server)",
        "calls/s",
        greenlet=flask_alone_greenlet,
        note="the Flask row's floor: its application called in one process without a server"
        " (the greenlet column: it needs no library)",
    )
)
register(
    Workload(
        "http_wsgi_tls",
        f"WSGI hello world over TLS, wrk -c{WRK_CONNECTIONS}",
        "req/s",
        driver=http_driver,
        args={"kind": "wsgi_tls"},
        note="a self-signed RSA-2048 certificate made for the run; wrk"
        " handshakes once per connection",
    )
)


def switch_floor_greenlet(greenlet_module, p):
    """The StreamServer row's floor: what a blocking-style handler pays that a
    Protocol server does not.  Each request, the hub switches into the
    handler and the handler's next ``recv`` switches back; a Protocol
    server's loop calls ``data_received`` instead.  Measured here with two
    bare ``greenlet.greenlet`` objects and no loop at all: the round trip
    rate (two Python-level ``switch()`` calls and two switches) is the
    value, and the rate of a plain call of a Python function, the callback's
    shape, is in the details.  Exact ``greenlet`` instances with shallow
    stacks: a server's greenlets are subclasses (a subtype check on each
    reference greenlet takes) with deeper stacks to copy, so this is a lower
    bound."""
    spin = greenlet_module.greenlet
    batch = 100

    def handler():
        while True:
            hub.switch()

    def hub_run(meter):
        while meter.running():
            for _ in range(batch):
                glet.switch()
            meter.add(batch)
        return meter

    def callback():
        return None

    glet = spin(handler)
    hub = spin(hub_run)
    switches = hub.switch(Meter(p.duration))
    calls = Meter(p.duration)
    while calls.running():
        for _ in range(batch):
            callback()
        calls.add(batch)
    glet.throw(greenlet_module.GreenletExit)  # ends the parked handler
    return switches.result(call_rate=round(max(calls.rates)))


register(
    Workload(
        "switch_floor",
        "greenlet switch round trip, bare (no loop)",
        "trips/s",
        greenlet=switch_floor_greenlet,
        note="the StreamServer row's floor: the two switches a blocking handler makes per"
        " request, between two bare greenlets (the greenlet column: it needs no library);"
        " the rate of a plain Python call is in the details",
    )
)

# --- 8b. memory per idle keep-alive connection ---------------------------------------
#
# A WSGI server holding many idle keep-alive connections, each of which has
# done one request and stays open: the shape of a server behind many slow
# clients.  The server's RSS (every process of it: granian's master and
# worker) grows by the measured amount over the measured connections.  A
# warm-up round opens a few first, so one-time costs (first arenas, pools,
# granian's threads) are not charged to the measured ones.  The kernel's
# socket buffers are not in RSS, for any server.

IDLE_CONNECTIONS = 10_000
IDLE_WARMUP = 200
#: Connections opened before their requests are sent: well below the
#: listener's backlog, so no connect waits for a SYN retransmit.
IDLE_BATCH = 250
IDLE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: granian in its default configuration otherwise (its configurations differ
#: in the threads running the application, not in what a connection holds),
#: but with room for the connections: its ``--backpressure`` caps the open
#: connections of a worker (default 1024: the rest wait unaccepted), and an
#: idle keep-alive connection is closed after ``--http1-header-read-timeout``
#: (default 30 s, at most 60 s), which opening 10k on a busy machine may near.
GRANIAN_IDLE_CONFIG = {
    "many-idle": [
        "--backpressure",
        str(2 * IDLE_CONNECTIONS),
        "--http1-header-read-timeout",
        "60000",
    ]
}


def raise_fd_limit(wanted: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit toward *wanted* (the hard limit caps it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        raise Skip(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} descriptors needed")


def read_response(sock) -> bytes:
    """One HTTP/1.1 response with a Content-Length; returns its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise RuntimeError(f"bad status line {status!r}")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if length is None:
        raise RuntimeError("response without Content-Length")
    while len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        body += chunk
    return body


def open_idle_connections(port: int, count: int) -> list[socket.socket]:
    """*count* connections, each having done one keep-alive request."""
    conns: list[socket.socket] = []
    try:
        while len(conns) < count:
            batch = [
                socket.create_connection(("127.0.0.1", port), timeout=60)
                for _ in range(min(IDLE_BATCH, count - len(conns)))
            ]
            conns.extend(batch)
            for sock in batch:
                sock.sendall(IDLE_REQUEST)
            for sock in batch:
                if read_response(sock) != HTTP_BODY:
                    raise RuntimeError("wrong body on an idle connection's request")
    except BaseException:
        for sock in conns:
            sock.close()
        raise
    return conns


def count_readable(socks) -> int:
    """How many of *socks* are readable now (poll: select() stops at fd 1024).

    An idle keep-alive connection has nothing to read; EOF (or anything
    else the server sent) makes it readable.
    """
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    return len(poller.poll(0))


def tree_rss(pid: int) -> int:
    """VmRSS of process *pid* and its descendants, in bytes."""
    total = 0
    for member in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:  # gone in the meantime: counts as nothing
            pass
    return total


def idle_keepalive_driver(lib, p):
    if FAMILY[lib] not in SERVERS["wsgi"]:
        raise Skip(f"{lib} has no wsgi server")
    n = p.size(IDLE_CONNECTIONS)
    # The server raises its own limit (see serve()); this is the client's.
    raise_fd_limit(n + IDLE_WARMUP + 100)
    config = "many-idle" if FAMILY[lib] == "granian" else None
    with http_server(lib, "wsgi", config=config) as (port, pid):
        warm = open_idle_connections(port, IDLE_WARMUP)
        try:
            before = tree_rss(pid)
            watch = Stopwatch()
            conns = open_idle_connections(port, n)
            seconds = watch.elapsed()
            after = tree_rss(pid)
            try:
                # Measured while held: a connection the server dropped meanwhile
                # (a timeout, a limit) would make the number a lie.
                closed = count_readable(conns + warm)
                if closed:
                    raise RuntimeError(f"the server closed {closed} idle connections")
            finally:
                for sock in conns:
                    sock.close()
        finally:
            for sock in warm:
                sock.close()
    return result(
        (after - before) / n,
        connections=n,
        rss_before=before,
        rss_after=after,
        open_seconds=round(seconds, 2),
    )


register(
    Workload(
        "memory_idle_keepalive",
        f"memory per idle keep-alive connection, {IDLE_CONNECTIONS // 1000}k",
        "bytes/conn",
        lower_is_better=True,
        driver=idle_keepalive_driver,
        note="server RSS growth (all its processes) per keep-alive connection left idle"
        " after one request; lower is better",
    )
)


# --- 9. memory per parked greenlet ---------------------------------------------------
#
# RSS grown by spawning `count` greenlets that each run a small function and
# park in sleep(1000), the common shape of an idle connection handler with a
# timeout.  A warm-up round parks a few first so one-time costs (hub, code
# objects, first arenas) are not charged to the measured ones.  The cyclic GC
# is off while spawning: with a million live objects its full collections make
# the spawn take a minute, and nothing here creates cyclic garbage for it to
# free (a gc.collect() still runs before each RSS reading).

PARK_SECONDS = 1000
WARMUP = 1000


def _memory_result(before: int, after: int, count: int, seconds: float):
    return result(
        (after - before) / count, greenlets=count, rss_delta=after - before, spawn_seconds=seconds
    )


def _measure_parked(spawn_parked, n: int):
    """RSS per greenlet of ``spawn_parked(n)`` (which parks n greenlets and
    returns them), after a warm-up round, the cyclic GC off (see the section
    comment)."""
    warm = spawn_parked(WARMUP)
    gc.collect()
    gc.disable()
    before = rss_bytes()
    watch = Stopwatch()
    parked = spawn_parked(n)
    seconds = watch.elapsed()
    gc.collect()
    after = rss_bytes()
    del warm, parked
    return _memory_result(before, after, n, seconds)


def memory_gevent(g, p, count):
    n = p.size(count)
    started = [0]

    def park():
        started[0] += 1
        g.sleep(PARK_SECONDS)

    def spawn_parked(k):
        target = started[0] + k
        glets = [g.spawn(park) for _ in range(k)]
        while started[0] < target:
            g.sleep(0)
        return glets

    return _measure_parked(spawn_parked, n)


def memory_greenlet(greenlet_module, p, count):
    """The floor: bare greenlets, each parked inside a small Python function
    (switched back to the main greenlet) as the others park in sleep."""
    n = p.size(count)
    main = greenlet_module.getcurrent()

    def park():
        main.switch()

    def spawn_parked(k):
        glets = [greenlet_module.greenlet(park) for _ in range(k)]
        for glet in glets:
            glet.switch()  # runs park() until it switches back: parked
        return glets

    return _measure_parked(spawn_parked, n)


def memory_eventlet(eventlet, p, count):
    n = p.size(count)
    started = [0]

    def park():
        started[0] += 1
        eventlet.sleep(PARK_SECONDS)

    def spawn_parked(k):
        target = started[0] + k
        threads = [eventlet.spawn(park) for _ in range(k)]
        while started[0] < target:
            eventlet.sleep(0)
        return threads

    return _measure_parked(spawn_parked, n)


async def memory_asyncio(aio, p, count):
    n = p.size(count)
    started = [0]

    async def park():
        started[0] += 1
        await aio.sleep(PARK_SECONDS)

    async def spawn_parked(k):
        target = started[0] + k
        tasks = [aio.create_task(park()) for _ in range(k)]
        while started[0] < target:
            await aio.sleep(0)
        return tasks

    warm = await spawn_parked(WARMUP)
    gc.collect()
    gc.disable()  # see the section comment
    before = rss_bytes()
    watch = Stopwatch()
    parked = await spawn_parked(n)
    seconds = watch.elapsed()
    gc.collect()
    after = rss_bytes()
    del warm, parked
    return _memory_result(before, after, n, seconds)


for _suffix, _count in (("100k", 100_000), ("1m", 1_000_000)):
    register(
        Workload(
            f"memory_{_suffix}",
            f"memory per parked greenlet, {_suffix.upper()}",
            "bytes/greenlet",
            lower_is_better=True,
            gevent=memory_gevent,
            eventlet=memory_eventlet,
            asyncio=memory_asyncio,
            greenlet=memory_greenlet,
            args={"count": _count},
            note="RSS growth per greenlet (task) parked in sleep(1000); lower is better",
        )
    )


# --- child process entry points -------------------------------------------------------


def _import_library(lib: str):
    try:
        return importlib.import_module(lib)
    except Exception as exc:  # not installed, or broken on this Python
        raise Skip(f"cannot import {lib}: {exc}") from None


def _run_coroutine(lib: str, coroutine):
    # Not asyncio.run(): on the way out it cancels and unwinds every task
    # still alive, which for a million parked tasks takes longer than the
    # measurement.  The child exits with os._exit() right after anyway.
    if lib in LOOP_FACTORIES:
        loop = _import_library(lib).new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(coroutine)


def run_workload(name: str, lib: str, quick: bool) -> dict[str, Any]:
    workload = WORKLOADS[name]
    params = Params(quick=quick)
    if workload.driver is not None:
        return workload.driver(lib, params, **workload.args)
    implementation = workload.implementation(lib)
    if implementation is None:
        raise Skip(f"no {name} for {lib}")
    module = _import_library("asyncio" if FAMILY[lib] == "asyncio" else lib)
    try:
        if FAMILY[lib] == "asyncio":
            return _run_coroutine(lib, implementation(module, params, **workload.args))
        return implementation(module, params, **workload.args)
    except NotImplementedError as exc:
        raise Skip(_lacks(lib, exc)) from None


def _lacks(lib: str, exc: NotImplementedError) -> str:
    """Skip reason for an API the library does not implement (rloop: TLS, ...)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{lib} does not implement {frame.name}() ({os.path.basename(frame.filename)})"


def serve(kind: str, lib: str, tcp_nodelay: bool, **options) -> None:
    """Serve *kind* on *lib*; *options* (tls_dir, config) are passed on when set."""
    announced = []

    def announce(port):
        announced.append(port)
        print(json.dumps({"port": port}), flush=True)

    options = {key: value for key, value in options.items() if value is not None}
    # Room for the idle keep-alive row's connections (granian inherits it).
    with contextlib.suppress(Skip, ValueError, OSError):
        raise_fd_limit(2 * IDLE_CONNECTIONS)
    try:
        server = SERVERS[kind].get(FAMILY[lib])
        if server is None:
            raise Skip(f"{lib} has no {kind} server")
        module = _import_library("asyncio" if FAMILY[lib] == "asyncio" else lib)
        if FAMILY[lib] == "asyncio":
            _run_coroutine(lib, server(module, announce, tcp_nodelay, **options))
        else:
            server(module, announce, tcp_nodelay, **options)
    except Skip as exc:
        print(json.dumps({"skip": str(exc)}), flush=True)
    except NotImplementedError as exc:
        if announced:
            raise
        print(json.dumps({"skip": _lacks(lib, exc)}), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Run one benchmark workload (child of compare.py)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run WORKLOAD on LIB and print one JSON line")
    run.add_argument("workload", choices=sorted(WORKLOADS))
    run.add_argument("lib", choices=list(FAMILY))
    run.add_argument("--quick", action="store_true")
    srv = sub.add_parser("serve", help="serve HTTP for the wrk workloads")
    srv.add_argument("kind", choices=sorted(SERVERS))
    srv.add_argument("lib", choices=list(FAMILY))
    srv.add_argument("--no-nodelay", dest="tcp_nodelay", action="store_false")
    srv.add_argument("--tls-dir", help="serve TLS with cert.pem and key.pem from this directory")
    srv.add_argument("--config", help="a server configuration (granian: GRANIAN_CONFIGS)")
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(args.kind, args.lib, args.tcp_nodelay, tls_dir=args.tls_dir, config=args.config)
        return
    try:
        outcome = run_workload(args.workload, args.lib, args.quick)
    except Skip as exc:
        outcome = {"skip": str(exc)}
    print(json.dumps(outcome), flush=True)
    sys.stderr.flush()
    # Skip interpreter teardown: unwinding a million parked greenlets (or
    # pending timers) takes longer than the measurement and proves nothing.
    os._exit(0)


if __name__ == "__main__":
    main()
