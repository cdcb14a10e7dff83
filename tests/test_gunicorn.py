"""gunicorn serving a WSGI app with the greenwheel worker (real gunicorn processes)."""

import concurrent.futures
import http.client
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from _childproc import child_env, wait_for

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(60)

APP = """
import json, os, time

from greenwheel.event import Event

# Requests in the app right now (/slow and /hold), and the gate /hold waits
# at until /release: the tests synchronise on these, not on sleeps.
in_app = [0]
gate = Event()

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/env"):
        sock = environ["gunicorn.socket"]
        body = json.dumps({
            "RAW_URI": environ["RAW_URI"],
            "PATH_INFO": path,
            "QUERY_STRING": environ["QUERY_STRING"],
            "peer": list(sock.getpeername()),
            "sock_is_same": environ.get("gunicorn.sock", sock) is sock,
        }).encode()
    elif path == "/slow":
        in_app[0] += 1
        try:
            time.sleep(float(environ.get("QUERY_STRING") or 1))  # patched: yields
        finally:
            in_app[0] -= 1
        body = b"slow done"
    elif path == "/hold":
        in_app[0] += 1
        try:
            gate.wait()
        finally:
            in_app[0] -= 1
        body = b"held done"
    elif path == "/release":
        gate.set()
        body = b"released"
    elif path == "/in_app":
        body = str(in_app[0]).encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"fast " + path.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


class Gunicorn:
    def __init__(self, tmp_path, worker, *extra):
        (tmp_path / "wsgiapp.py").write_text(APP)
        self.log_path = tmp_path / "gunicorn.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                worker,
                "-b",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--worker-connections",
                "50",
                "--no-control-socket",
                *extra,
                "wsgiapp:app",
            ],
            cwd=str(tmp_path),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        self.url = self._wait_ready()

    def output(self):
        return self.log_path.read_text()

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", self.output())
            if match and "Booting worker" in self.output():
                url = match.group(1)
                try:
                    urllib.request.urlopen(url + "/", timeout=2).read()
                    return url
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail("gunicorn did not start:\n" + self.output())

    def get(self, path, timeout=10):
        start = time.monotonic()
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.read().decode(), time.monotonic() - start

    def wait_in_app(self, count):
        """Wait until *count* requests are inside the app (they were read,
        dispatched and are being handled)."""
        if not wait_for(lambda: self.get("/in_app")[0] == str(count), timeout=20):
            pytest.fail("never %d requests in the app:\n%s" % (count, self.output()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture(params=["greenwheel.gunicorn.Worker", "greenwheel.gunicorn.StreamWorker"])
def server(request, tmp_path):
    srv = Gunicorn(tmp_path, request.param, "--graceful-timeout", "10")
    yield srv
    srv.stop()


def test_slow_requests_do_not_block_fast_ones(server):
    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        held = [pool.submit(server.get, "/hold") for _ in range(5)]
        # The five are handled concurrently by the one worker process...
        server.wait_in_app(5)
        fast = [pool.submit(server.get, "/f%d" % i) for i in range(20)]
        for i, f in enumerate(fast):
            body, _ = f.result(timeout=20)
            assert body == "fast /f%d" % i
        # ... and the twenty others were served while all five still waited.
        assert not any(f.done() for f in held)
        assert server.get("/release")[0] == "released"
        for f in held:
            body, _ = f.result(timeout=20)
            assert body == "held done"


def test_sigterm_finishes_in_flight_requests_then_exits(server):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = pool.submit(server.get, "/slow?1.0")
        server.wait_in_app(1)  # the request is being handled
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        body, _ = in_flight.result(timeout=15)
        assert body == "slow done"
        server.proc.wait(timeout=15)
        elapsed = time.monotonic() - start
    assert server.proc.returncode == 0, server.output()
    assert elapsed < 8.0  # well before graceful_timeout kills anything
    assert "Worker graceful timeout" not in server.output()
    with pytest.raises(urllib.error.URLError):
        server.get("/", timeout=2)


def test_graceful_timeout_kills_stragglers(tmp_path):
    srv = Gunicorn(tmp_path, "greenwheel.gunicorn.Worker", "--graceful-timeout", "1")
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(srv.get, "/slow?30")
            srv.wait_in_app(1)
            start = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.wait(timeout=20)
            assert time.monotonic() - start < 10
            with pytest.raises((OSError, http.client.HTTPException)):
                stuck.result(timeout=15)
    finally:
        srv.stop()


def test_gunicorn_environ_keys(server):
    # RAW_URI is the request target as sent (still percent-encoded), and
    # gunicorn.socket the client's connection (its peer is the client).
    host, port = server.url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for target in ("/env/a%20b?x=1&y=%2F", "/env"):
            conn.request("GET", target)
            resp = conn.getresponse()
            assert resp.status == 200
            env = json.loads(resp.read())
            assert env["RAW_URI"] == target
            assert env["PATH_INFO"] == target.split("?")[0].replace("%20", " ")
            assert env["QUERY_STRING"] == (target.split("?") + [""])[1]
            assert env["peer"] == list(conn.sock.getsockname())
            assert env["sock_is_same"] is True
    finally:
        conn.close()


def test_worker_keeps_the_fused_request_path():
    # The environ keys and the access log come without overriding the hooks
    # that pywsgi fuses into one fast path per request.
    from greenwheel import gunicorn as gw_gunicorn

    assert gw_gunicorn.Worker.wsgi_handler._plain


@pytest.mark.parametrize(
    "worker", ["greenwheel.gunicorn.Worker", "greenwheel.gunicorn.StreamWorker"]
)
def test_access_log(tmp_path, worker):
    access = tmp_path / "access.log"
    srv = Gunicorn(
        tmp_path,
        worker,
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(r)s|%(s)s|%({x-test}i)s|%(U)s|%(q)s",
    )
    try:
        req = urllib.request.Request(srv.url + "/hello?q=1", headers={"X-Test": "yes"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.read() == b"fast /hello"

        def lines():
            return [line for line in access.read_text().splitlines() if "/hello" in line]

        deadline = time.monotonic() + 10
        while not lines() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        srv.stop()
    assert lines() == ["GET /hello?q=1 HTTP/1.1|200|yes|/hello|q=1"], access.read_text()


def test_gunicorns_gevent_worker_loads_under_the_alias():
    # gunicorn's gevent workers check gevent.__version__ >= 24.10.1 at import:
    # under the alias the gevent name reports the gevent API greenwheel follows.
    code = (
        "import gunicorn.workers.ggevent as g, gevent, greenwheel, greenwheel._core as c\n"
        "print(g.VERSION)\n"
        "print(gevent is greenwheel, c.__version__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "greenwheel.as_gevent", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    version, same = out.stdout.splitlines()
    own = same.split()[1]
    assert version.startswith("gevent/26.9.0+greenwheel.%s gunicorn/" % own), version
    assert same == "True %s" % own
