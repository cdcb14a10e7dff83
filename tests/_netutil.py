"""Helpers shared by the networking tests: real clients outside the loop.

- :func:`run_in_thread` runs a plain (stdlib, blocking) function in an OS
  thread while the calling greenlet waits cooperatively for it, so the loop
  keeps serving meanwhile.
- :func:`run_process` runs Python code in a child interpreter
  (``sys.executable``) and collects its output without blocking the loop.
- :func:`ensure_nofile` raises the soft RLIMIT_NOFILE or skips the test.
"""

import os
import subprocess
import sys
import threading

import pytest

import greenwheel as gw
from greenwheel.socket import wait_read


def run_in_thread(func, *args, timeout=30):
    """Run ``func(*args)`` in a new OS thread; return its result (or raise its error)."""
    outcome = {}
    r, w = os.pipe()

    def target():
        try:
            outcome["value"] = func(*args)
        except BaseException as ex:  # noqa: B036 - handed back to the test
            outcome["error"] = ex
        finally:
            os.write(w, b"x")

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        # The pipe turns "thread finished" into fd readiness for the loop.
        wait_read(r, timeout=timeout, timeout_exc=AssertionError("thread client timed out"))
    finally:
        os.close(r)
        os.close(w)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_process(code, *args, timeout=60):
    """Run ``python -c code args...``; return its stdout (text).  Fails on a non-zero exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code] + [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks = []
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    try:
        with gw.Timeout(timeout, AssertionError("child process timed out")):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    wait_read(fd)
                    continue
                if not chunk:
                    break
                chunks.append(chunk)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    rc = proc.wait(timeout=timeout)
    assert rc == 0, "child failed (%s): %s" % (rc, err.decode(errors="replace"))
    return b"".join(chunks).decode()


def ensure_nofile(needed):
    """Make sure this process may open *needed* descriptors (raising the soft limit)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        pytest.skip("resource module unavailable: cannot check RLIMIT_NOFILE")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(
                "RLIMIT_NOFILE hard limit %d is below the %d descriptors needed" % (hard, needed)
            )
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard)
        )


def has_ipv6_loopback():
    import socket

    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
