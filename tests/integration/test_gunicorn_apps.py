"""gunicorn serving real Flask and Django applications on greenwheel.

Two workers, each with a Flask app and a single-file Django project written
into the test's directory:

- ``-k gevent``: gunicorn's own gevent worker (gunicorn's HTTP parser on a
  gevent StreamServer), run through the alias as
  ``python -m greenwheel.as_gevent gunicorn -k gevent ...``;
- ``-k greenwheel.gunicorn.Worker``: greenwheel's worker (greenwheel's pywsgi),
  run as ``python -m gunicorn``, as its users run it (no alias needed).

A client made of http.client connections and raw sockets checks what a user
sees: POST bodies, chunked request bodies, a streaming response that arrives
piece by piece, several requests on one kept-alive connection, slow requests
that overlap in the one worker process, and a SIGTERM that lets the request
in flight finish before the master exits 0.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from _childproc import child_env

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(120)

FLASK_SITE = r"""
import os, sys, threading, time
from flask import Flask, Response, request

app = Flask(__name__)
# threading is patched in the worker (both workers call patch_all): waiting on
# this Event parks a greenlet, and another request can set it.
released = threading.Event()


@app.route("/hello")
def hello():
    return "hello from flask"


@app.route("/info")
def info():
    gevent = sys.modules.get("gevent")
    return {
        "framework": "flask",
        "pid": os.getpid(),
        "remote_port": int(request.environ["REMOTE_PORT"]),
        "gevent": getattr(gevent, "__name__", None),
    }


@app.route("/echo", methods=["POST"])
def echo():
    return Response(request.get_data(), mimetype="application/octet-stream")


@app.route("/stream")
def stream():
    def pieces():
        yield b"first;"
        # The rest waits for the client's POST /release: a server that
        # buffered the response would never show the client this first piece.
        if not released.wait(20):
            yield b"never released;"
            return
        released.clear()
        for i in range(3):
            yield b"part%d;" % i

    return Response(pieces(), mimetype="text/plain")


@app.route("/release", methods=["POST"])
def release():
    released.set()
    return "released"


@app.route("/slow")
def slow():
    print("slow request started", flush=True)
    time.sleep(float(request.args.get("s", "1")))
    return "slow done"
"""

DJANGO_SITE = r"""
import os, sys, threading, time
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-" + "k" * 40,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)

from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

released = threading.Event()  # cooperative: the worker patched threading


def hello(request):
    return HttpResponse("hello from django", content_type="text/plain")


def info(request):
    gevent = sys.modules.get("gevent")
    return JsonResponse({
        "framework": "django",
        "pid": os.getpid(),
        "remote_port": int(request.META["REMOTE_PORT"]),
        "gevent": getattr(gevent, "__name__", None),
    })


def echo(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    if request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        # Django reads CONTENT_LENGTH bytes of the body, so none of a chunked
        # one: the server's wsgi.input has the decoded body to its end.
        data = request.META["wsgi.input"].read()
    else:
        data = request.body
    return HttpResponse(data, content_type="application/octet-stream")


def stream(request):
    def pieces():
        yield b"first;"
        if not released.wait(20):
            yield b"never released;"
            return
        released.clear()
        for i in range(3):
            yield b"part%d;" % i

    return StreamingHttpResponse(pieces(), content_type="text/plain")


def release(request):
    released.set()
    return HttpResponse("released")


def slow(request):
    print("slow request started", flush=True)
    time.sleep(float(request.GET.get("s", "1")))
    return HttpResponse("slow done")


urlpatterns = [
    path("hello", hello),
    path("info", info),
    path("echo", echo),
    path("stream", stream),
    path("release", release),
    path("slow", slow),
]

application = get_wsgi_application()
"""

SITES = {
    "flask": ("flask_site", FLASK_SITE, "app"),
    "django": ("django_site", DJANGO_SITE, "application"),
}

WORKERS = {
    # gunicorn's own gevent worker: needs `import gevent`, hence the alias.
    "gevent": [sys.executable, "-m", "greenwheel.as_gevent", "gunicorn", "-k", "gevent"],
    "greenwheel": [sys.executable, "-m", "gunicorn", "-k", "greenwheel.gunicorn.Worker"],
}


class Gunicorn:
    """One gunicorn master with one worker, serving *site* on a free port."""

    def __init__(self, directory, worker, site, *extra):
        module, source, attr = SITES[site]
        (directory / (module + ".py")).write_text(source)
        self.worker = worker
        self.log_path = directory / ("gunicorn-%s-%s.log" % (worker, site))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            WORKERS[worker]
            + ["-b", "127.0.0.1:0", "--workers", "1", "--worker-connections", "100"]
            + ["--no-control-socket", "--graceful-timeout", "15", *extra]
            + ["%s:%s" % (module, attr)],
            cwd=str(directory),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        self.port = None
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def output(self):
        return self.log_path.read_text()

    def _wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = self.output()
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", out)
            if match and "Booting worker" in out:
                self.port = int(match.group(1))
                try:
                    if self.request("GET", "/hello")[0] == 200:
                        return self.port
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("gunicorn did not start:\n" + self.output())

    def connection(self, timeout=20):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        """One request on a new connection: (status, body)."""
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)
        self.log.close()


PARAMS = [(w, s) for w in WORKERS for s in SITES]
IDS = ["%s-%s" % p for p in PARAMS]


@pytest.fixture(scope="module", params=PARAMS, ids=IDS)
def site(request, tmp_path_factory):
    worker, name = request.param
    server = Gunicorn(tmp_path_factory.mktemp("site"), worker, name)
    try:
        yield server
    finally:
        server.stop()


def test_app_answers_on_the_worker(site):
    status, body = site.request("GET", "/info")
    assert status == 200
    info = json.loads(body)
    assert info["framework"] in SITES
    status, body = site.request("GET", "/hello")
    assert (status, body) == (200, b"hello from %s" % info["framework"].encode())
    if site.worker == "gevent":
        # gunicorn's gevent worker imported gevent: it got greenwheel.
        assert info["gevent"] == "greenwheel"


def test_post_bodies(site):
    # A large body (several socket reads on the server) and an empty one.
    body = os.urandom(300_000)
    status, echoed = site.request(
        "POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 200
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(body).hexdigest()
    assert site.request("POST", "/echo", body=b"")[:2] == (200, b"")


def test_chunked_request_body(site):
    # Chunks sent one write at a time, with a chunk extension and a trailer.
    pieces = [b"hello ", b"chunked ", os.urandom(70_000), b" world"]
    conn = site.connection()
    try:
        conn.putrequest("POST", "/echo")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for i, piece in enumerate(pieces):
            ext = b";n=%d" % i if i == 1 else b""
            conn.send(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
        conn.send(b"0\r\nX-Trailer: yes\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"".join(pieces)
    finally:
        conn.close()


def test_streaming_response_arrives_piece_by_piece(site):
    conn = site.connection()
    try:
        conn.request("GET", "/stream")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        # The first piece is here while the app still waits for the release.
        first = resp.read1(100)
        assert first == b"first;"
        assert site.request("POST", "/release") == (200, b"released")
        assert resp.read() == b"part0;part1;part2;"
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(site):
    conn = site.connection()
    try:
        conn.connect()
        local_port = conn.sock.getsockname()[1]
        sock = conn.sock
        seen_ports = []
        for i in range(6):
            if i % 2:
                body = b"request %d" % i
                conn.request("POST", "/echo", body=body)
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, body)
            else:
                conn.request("GET", "/info")
                resp = conn.getresponse()
                assert resp.status == 200
                seen_ports.append(json.loads(resp.read())["remote_port"])
            assert not resp.will_close, "the server closed the connection"
        # The server saw every request come from this one connection.
        assert seen_ports == [local_port] * 3
        assert conn.sock is sock
    finally:
        conn.close()


def test_slow_requests_overlap_in_the_one_worker(site):
    # 20 requests that each sleep 0.5 s in the app: serially 10 s.
    count, delay = 20, 0.5
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        start = time.monotonic()
        futures = [pool.submit(site.request, "GET", "/slow?s=%s" % delay) for _ in range(count)]
        results = [f.result(timeout=60) for f in futures]
        elapsed = time.monotonic() - start
    assert results == [(200, b"slow done")] * count
    serial = count * delay
    print("20 x 0.5 s requests: %.2f s (serial %.1f s)" % (elapsed, serial))
    assert elapsed < serial / 5, "elapsed %.2f s, serial %.1f s" % (elapsed, serial)


@pytest.mark.parametrize(("worker", "name"), PARAMS, ids=IDS)
def test_sigterm_lets_the_request_in_flight_finish(tmp_path, worker, name):
    server = Gunicorn(tmp_path, worker, name)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(server.request, "GET", "/slow?s=1.5")
            # The app has the request (its own line in the log), then SIGTERM.
            deadline = time.monotonic() + 20
            while "slow request started" not in server.output():
                assert time.monotonic() < deadline, server.output()
                assert not in_flight.done(), in_flight.result()
                time.sleep(0.01)
            start = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert in_flight.result(timeout=30) == (200, b"slow done")
            server.proc.wait(timeout=30)
            elapsed = time.monotonic() - start
        out = server.output()
        assert server.proc.returncode == 0, out
        assert "Worker graceful timeout" not in out
        assert "Shutting down: Master" in out
        # Well before the 15 s graceful timeout would have killed the request.
        assert elapsed < 10, "exited %.2f s after SIGTERM" % elapsed
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()
