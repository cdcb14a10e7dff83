"""The producer side for tests/integration/test_celery.py (a plain process, no gevent).

``python celery_client.py N SECONDS`` waits until a worker answers a ping,
sends N ``nap(i, SECONDS)`` tasks, prints ``SENT`` once all N have started
running on the worker (counted in redis), collects every result, and prints
one JSON line: the wall time from the first send to the last result, the
results, and the broker's leftovers (queue length, unacknowledged messages).
"""

import json
import sys
import time

import redis
from celery_tasks import RUNS_KEY, URL, app, nap

n, seconds = int(sys.argv[1]), float(sys.argv[2])
r = redis.Redis.from_url(URL)

deadline = time.monotonic() + 60
while not app.control.ping(timeout=0.5):
    if time.monotonic() > deadline:
        sys.exit("no worker answered a ping within 60 s")

started = time.time()
pending = [nap.delay(i, seconds) for i in range(n)]
while r.llen(RUNS_KEY) < n:
    if time.monotonic() > deadline:
        sys.exit("only %d of %d tasks started" % (r.llen(RUNS_KEY), n))
    time.sleep(0.01)
print("RUNNING", flush=True)

results = [res.get(timeout=60) for res in pending]
wall = time.time() - started
states = sorted({res.state for res in pending})
print(
    json.dumps(
        {
            "wall": wall,
            "results": results,
            "states": states,
            "runs": [int(x) for x in r.lrange(RUNS_KEY, 0, -1)],
            # kombu's redis transport keeps delivered-but-unacked messages here
            "queued": r.llen("celery"),
            "unacked": r.hlen("unacked"),
        }
    ),
    flush=True,
)
