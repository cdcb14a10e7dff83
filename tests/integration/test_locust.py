"""locust, unmodified, through ``python -m greenwheel.as_gevent locust``.

locust is written for gevent: it imports gevent, monkey-patches, runs every
simulated user in a greenlet, uses geventhttpclient for FastHttpUser and
``zmq.green`` for master/worker traffic. Here it runs as a user would start
it, with the alias as the only change, against a plain threading HTTP server
(apps/slow_server.py, stdlib only) whose endpoint takes 0.1 s.

What the user sees is locust's own report (``--json``): every request
succeeded, none failed. That the users really overlap is measured twice:
locust's request count against the most a serial client could make in the
same time (one request per 0.1 s), and the server's own count of requests in
flight at once. The server also records which processes sent the load and
which library ``import gevent`` gave them, so a run that silently fell back
to real gevent, or a worker that never generated load, cannot pass.

Three ways a user runs locust: headless for 10 s (HttpUser and FastHttpUser
side by side), a master with two workers over zmq.green, and the default web
UI (Flask on gevent's pywsgi) starting and stopping a swarm.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from _services import free_port, wait_port

from _childproc import child_env

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
LOCUSTFILE = os.path.join(APPS, "locustfile.py")
DELAY = 0.1  # the server's /slow takes this long (apps/slow_server.py)
NAMES = ("http-user", "fast-http-user")  # request names of the two user classes


def _stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server():
    """Base URL of a fresh slow_server.py (fresh, so its counts are this test's)."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(APPS, "slow_server.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        yield "http://127.0.0.1:%d" % port
    finally:
        _stop(proc)
        proc.stdout.close()


def _server_stats(url):
    with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
        return json.loads(resp.read())


def _locust(*args):
    return [sys.executable, "-m", "greenwheel.as_gevent", "locust", "-f", LOCUSTFILE, *args]


def _by_name(report):
    """locust's --json report (a list of per-name entries) keyed by request name."""
    return {entry["name"]: entry for entry in report}


def _check_entry(entry, users, measured):
    """Every request succeeded, and far more of them than a serial client could make."""
    duration = entry["last_request_timestamp"] - entry["start_time"]
    serial_max = duration / DELAY + 1  # one request at a time, each taking DELAY
    measured[entry["name"]] = "%d requests, %d failures in %.1f s (serial at most %d, ideal %d)" % (
        entry["num_requests"],
        entry["num_failures"],
        duration,
        serial_max,
        users * serial_max,
    )
    assert entry["num_failures"] == 0, measured
    # The ideal is `users` times the serial count; 2 shared cores and locust's
    # own per-request work take a good share, so the margin is wide.
    assert entry["num_requests"] > 4 * serial_max, measured


def test_headless_httpuser_and_fasthttpuser(server):
    users = 20  # per user class
    proc = subprocess.Popen(
        _locust(
            "--headless",
            "-u", str(2 * users),
            "-r", str(2 * users),
            "-t", "10s",
            "--host", server,
            "--json",
            "--only-summary",
            "--skip-log",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(USERS_PER_CLASS=str(users)),
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    # locust exits 1 when any request failed (its --exit-code-on-error).
    assert proc.returncode == 0, err[-3000:]
    stats = _by_name(json.loads(out))
    assert sorted(stats) == sorted(NAMES), stats.keys()
    measured = {}
    for name in NAMES:
        _check_entry(stats[name], users, measured)
    srv = _server_stats(server)
    print("locust headless:", measured, "server:", srv)
    # The server answered every request locust counted (a few more, which
    # locust dropped at its stop, are allowed).
    assert srv["served"] >= sum(stats[n]["num_requests"] for n in NAMES), (srv, measured)
    # Both classes' users were in flight together, in this one process, on greenwheel.
    assert srv["max_in_flight"] >= 1.5 * users, (srv, measured)
    assert srv["pids"] == [str(proc.pid)], srv
    assert srv["impls"] == ["greenwheel"], srv


def test_master_with_two_workers_over_zmq(server):
    users = 20  # per user class, shared by the two workers
    port = free_port()
    env = child_env(USERS_PER_CLASS=str(users))
    procs = []
    try:
        master = subprocess.Popen(
            _locust(
                "--master",
                "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port),
                "--expect-workers", "2",
                "--expect-workers-max-wait", "30",
                "--headless",
                "-u", str(2 * users),
                "-r", str(2 * users),
                "-t", "5s",
                "--host", server,
                "--json",
                "--only-summary",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        procs.append(master)
        workers = []
        for _ in range(2):
            worker = subprocess.Popen(
                _locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            procs.append(worker)
            workers.append(worker)
        started = time.monotonic()
        out, err = master.communicate(timeout=60)
        # The workers quit when the master tells them to.
        worker_logs = [w.communicate(timeout=30)[1] for w in workers]
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            _stop(proc)
    assert master.returncode == 0, err[-3000:]
    assert "2 workers connected" in err, err[-3000:]
    assert "to 2 ready workers" in err, err[-3000:]
    for worker, log in zip(workers, worker_logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
        assert "Got quit message from master" in log, log[-3000:]
    stats = _by_name(json.loads(out))
    assert sorted(stats) == sorted(NAMES), stats.keys()
    measured = {"wall": "%.1f s" % elapsed}
    for name in NAMES:
        _check_entry(stats[name], users, measured)
    srv = _server_stats(server)
    print("locust distributed:", measured, "server:", srv)
    # Both workers, and only they, generated the load, on greenwheel.
    assert srv["pids"] == sorted(str(w.pid) for w in workers), srv
    assert srv["impls"] == ["greenwheel"], srv
    assert srv["max_in_flight"] >= 1.5 * users, (srv, measured)


def _wait(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def test_web_ui_starts_and_stops_a_swarm(server):
    """locust's default mode: its web UI (Flask on gevent's pywsgi) drives the run."""
    users = 5  # per user class
    port = free_port()
    proc = subprocess.Popen(
        _locust("--web-host", "127.0.0.1", "--web-port", str(port), "--host", server),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(USERS_PER_CLASS=str(users), PYTHONFAULTHANDLER="1"),
    )
    base = "http://127.0.0.1:%d" % port

    def call(path, data=None):
        with urllib.request.urlopen(base + path, data=data, timeout=10) as resp:
            return json.loads(resp.read())

    try:
        wait_port(port, proc=proc)
        form = urllib.parse.urlencode(
            {"user_count": 2 * users, "spawn_rate": 2 * users, "host": server}
        )
        assert call("/swarm", form.encode())["success"]
        # Load is flowing once the server has answered a good number of requests.
        _wait(lambda: _server_stats(server)["served"] >= 100, "100 requests at the server")
        stats = call("/stats/requests")
        assert stats["state"] == "running" and stats["user_count"] == 2 * users, stats
        entries = {e["name"]: e for e in stats["stats"]}
        for name in NAMES:
            assert entries[name]["num_requests"] > 0, entries
            assert entries[name]["num_failures"] == 0, entries
        assert call("/stop", b"")["success"]
        _wait(lambda: call("/stats/requests")["state"] == "stopped", "the swarm to stop")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        err = proc.stderr.read()
    except BaseException:
        # What locust itself said is the first thing to read when the web UI
        # misbehaves (pytest shows this output with the failure).
        alive = proc.poll() is None
        _stop(proc)
        print(
            "locust was %s; its stderr (tail):"
            % ("alive" if alive else "dead, %s" % proc.returncode)
        )
        print(proc.stderr.read()[-5000:])
        raise
    finally:
        _stop(proc)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0, err[-3000:]
    srv = _server_stats(server)
    assert srv["pids"] == [str(proc.pid)] and srv["impls"] == ["greenwheel"], srv
    assert srv["max_in_flight"] >= 1.5 * users, srv
