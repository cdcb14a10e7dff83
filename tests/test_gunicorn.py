"""gunicorn serving a WSGI app with the greenwheel worker (real gunicorn processes)."""

import concurrent.futures
import http.client
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from _childproc import child_env

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.timeout(60)

APP = """
import os, time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or 1))  # patched: yields
        body = b"slow done"
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
        slow = [pool.submit(server.get, "/slow?1.0") for _ in range(5)]
        time.sleep(0.2)
        fast = [pool.submit(server.get, "/f%d" % i) for i in range(20)]
        for i, f in enumerate(fast):
            body, elapsed = f.result()
            assert body == "fast /f%d" % i
            assert elapsed < 0.6, elapsed
        start = time.monotonic()
        for f in slow:
            body, elapsed = f.result()
            assert body == "slow done"
        # The 5 slow requests ran concurrently in one worker process.
        assert time.monotonic() - start < 1.5


def test_sigterm_finishes_in_flight_requests_then_exits(server):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = pool.submit(server.get, "/slow?1.0")
        time.sleep(0.3)  # the request is being handled
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
            time.sleep(0.3)
            start = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.wait(timeout=20)
            assert time.monotonic() - start < 10
            with pytest.raises((OSError, http.client.HTTPException)):
                stuck.result(timeout=15)
    finally:
        srv.stop()
