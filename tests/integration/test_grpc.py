"""grpcio in gevent mode, unmodified: ``grpc.experimental.gevent.init_gevent()``.

The client runs through the alias as a gevent application would: it calls
``monkey.patch_all()`` and then ``init_gevent()``, which binds grpc's Cython
layer to ``gevent.hub`` (greenwheel's hub), runs each blocking completion-queue
wait in ``get_hub().threadpool`` and spawns grpc's callbacks into a
``gevent.pool.Group``. 100 greenlets each make one unary call to a local
server whose handler sleeps 0.2 s: one call at a time would take 20 s.

The server is built without protoc, from grpc's generic handlers with bytes
in and out. It runs either as a plain threaded grpc server (100 workers, so
it is never the bottleneck) or through the alias in gevent mode as well.

The control shows the timing assertion can fail: without ``init_gevent()``
each call blocks the only OS thread in grpc's C core, so the greenlets'
calls run one after another.
"""

import json
import subprocess
import sys

import pytest

from _childproc import child_env, run_python

DELAY = 0.2
CALLS = 100

SERVER = r"""
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey
    monkey.patch_all()
    import grpc.experimental.gevent
    grpc.experimental.gevent.init_gevent()
import time
from concurrent import futures
import grpc

DELAY = float(sys.argv[2])

def hello(request, context):
    time.sleep(DELAY)
    return b"hello " + request

handler = grpc.method_handlers_generic_handler(
    "gw.Test", {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=100))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""

CLIENT = r"""
import json, sys, time
from gevent import monkey
monkey.patch_all()
import gevent
import grpc.experimental.gevent

port, calls, gevent_mode = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if gevent_mode:
    grpc.experimental.gevent.init_gevent()
import grpc
from grpc._cython import cygrpc

channel = grpc.insecure_channel("127.0.0.1:" + port)
hello = channel.unary_unary("/gw.Test/Hello")
# One call connects the channel before the clock starts: the measure is the calls.
assert hello(b"warm-up", timeout=20) == b"hello warm-up"

start = time.monotonic()
jobs = [gevent.spawn(hello, b"%d" % i, timeout=60) for i in range(calls)]
gevent.joinall(jobs, timeout=90, raise_error=True)
elapsed = time.monotonic() - start
channel.close()
print(json.dumps({
    "elapsed": elapsed,
    "replies": [job.value.decode() for job in jobs],
    "gevent_hub": getattr(cygrpc.gevent_hub, "__name__", None),
}))
"""


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    proc.stdout.close()


@pytest.fixture(params=["threads", "gevent"])
def server_port(request, tmp_path):
    """Start the grpc server in a child process; yield its port."""
    script = tmp_path / "grpc_server.py"
    script.write_text(SERVER)
    cmd = [sys.executable, str(script), request.param, str(DELAY)]
    if request.param == "gevent":
        cmd[1:1] = ["-m", "greenwheel.as_gevent"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        line = proc.stdout.readline()  # the server prints its port once it serves
        assert line.strip().isdigit(), "server did not start (exit %s)" % proc.poll()
        yield line.strip()
    finally:
        _stop(proc)


def _client(port, calls, gevent_mode):
    proc = run_python(
        CLIENT,
        port,
        str(calls),
        "1" if gevent_mode else "0",
        timeout=60,
        python_args=("-m", "greenwheel.as_gevent"),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_100_concurrent_unary_calls_overlap_in_gevent_mode(server_port):
    out = _client(server_port, CALLS, gevent_mode=True)
    serial = CALLS * DELAY
    print(
        "grpc: %d calls of %.1f s in %.3f s (serial %.0f s)"
        % (CALLS, DELAY, out["elapsed"], serial)
    )
    # grpc's gevent mode runs on greenwheel's hub, through the gevent name.
    assert out["gevent_hub"] == "greenwheel.hub"
    assert out["replies"] == ["hello %d" % i for i in range(CALLS)]
    # Ideal is one DELAY (serial/100); serial/10 leaves room for two busy cores.
    assert out["elapsed"] < serial / 10, out["elapsed"]


@pytest.mark.parametrize("server_port", ["threads"], indirect=True)
def test_control_without_init_gevent_the_calls_run_one_at_a_time(server_port):
    calls = 10
    out = _client(server_port, calls, gevent_mode=False)
    serial = calls * DELAY
    print("grpc control: %d calls in %.3f s (serial %.1f s)" % (calls, out["elapsed"], serial))
    assert out["gevent_hub"] is None
    assert out["replies"] == ["hello %d" % i for i in range(calls)]
    assert out["elapsed"] >= serial * 0.8, out["elapsed"]
