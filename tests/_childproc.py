"""Helpers for tests that run real software in child processes.

Monkey-patching is process-global, so every patched scenario runs in a
fresh interpreter (:func:`run_python`) and reports through its output.
:func:`slow_http_server` starts a plain threading HTTP server (in its own
process) whose every response takes a fixed delay.
"""

import contextlib
import os
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "python")


def child_env(**extra):
    env = dict(os.environ)
    if not env.get("GREENWHEEL_TEST_INSTALLED"):  # else the installed wheel (see conftest)
        env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONWARNINGS", None)
    env.update(extra)
    return env


def run_python(code, *args, timeout=60, cwd=None, check=True, python_args=()):
    """Run *code* (dedented) in a new interpreter; return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, *python_args, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=child_env(),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            "child failed with %s\n--- stdout\n%s\n--- stderr\n%s"
            % (proc.returncode, proc.stdout, proc.stderr)
        )
    return proc


_SERVER = r"""
import http.server, socketserver, sys, time

DELAY = float(sys.argv[1])

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(DELAY)
        body = ("hello %s" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 2:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def slow_http_server(tmp_path, delay=0.2, tls=None):
    """Yield the base URL of an HTTP server (another process) that answers after *delay*.

    With *tls* (``(certfile, keyfile)``) it serves HTTPS.
    """
    script = tmp_path / "slow_server.py"
    script.write_text(_SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(delay), *(tls or ())],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        port = int(proc.stdout.readline())
        yield "%s://127.0.0.1:%d" % ("https" if tls else "http", port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def retire_default_threadpool():
    """Stop the default thread pool's workers and wait until they have exited.

    Other test modules skip their "the loop ran dry" checks while extra OS
    threads live, so tests that use the pool must not leave workers behind.
    """
    import _thread

    from greenwheel import _threadpool

    pool = _threadpool._default_pool
    if pool is None or not pool.size:
        return
    target = _thread._count() - pool.size
    pool.kill()
    deadline = time.monotonic() + 10
    while _thread._count() > target and time.monotonic() < deadline:
        time.sleep(0.005)
