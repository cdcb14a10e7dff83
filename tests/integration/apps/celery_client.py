"""The producer side for tests/integration/test_celery.py (a plain process, no gevent).

Both modes first wait until a worker answers a ping, and end by printing one
JSON line.

``python celery_client.py batch N SECONDS`` sends N ``nap(i, SECONDS)``
tasks, prints ``RUNNING`` once all N have started on the worker (counted in
redis), and collects every result. It reports the wall time from the first
send to the last result, the results, every execution the tasks recorded, and
the broker's leftovers (queue length, unacknowledged messages).

``python celery_client.py features`` uses what celery's gevent pool builds on
gevent's Timeout, kill and spawn_later: a hard time limit, revoking a running
task with terminate=True, and a countdown. It reports each outcome and how
long it took.
"""

import json
import sys
import time

import redis
from celery_tasks import RUNS_KEY, URL, app, nap

r = redis.Redis.from_url(URL)
deadline = time.monotonic() + 60


def wait_until(predicate, what):
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + what)
        time.sleep(0.01)


wait_until(lambda: app.control.ping(timeout=0.5), "a worker to answer a ping")


def batch(n, seconds):
    started = time.time()
    pending = [nap.delay(i, seconds) for i in range(n)]
    wait_until(lambda: r.llen(RUNS_KEY) >= n, "all %d tasks to start" % n)
    print("RUNNING", flush=True)
    results = [res.get(timeout=60) for res in pending]
    return {
        "wall": time.time() - started,
        "results": results,
        "states": sorted({res.state for res in pending}),
        "runs": [int(x) for x in r.lrange(RUNS_KEY, 0, -1)],
        # kombu's redis transport keeps delivered-but-unacked messages here
        "queued": r.llen("celery"),
        "unacked": r.hlen("unacked"),
    }


def outcome(res, started):
    try:
        value = res.get(timeout=20)
    except Exception as exc:  # the task's failure, as the user receives it
        value = type(exc).__name__
    return {"value": value, "state": res.state, "seconds": time.time() - started}


def features():
    report = {}
    # A hard time limit (celery wraps the task in gevent.Timeout).
    started = time.time()
    report["time_limit"] = outcome(nap.apply_async((1, 5.0), time_limit=0.5), started)
    # revoke(terminate=True) of a running task (celery calls gevent.kill).
    res = nap.apply_async((2, 5.0))
    wait_until(lambda: b"2" in r.lrange(RUNS_KEY, 0, -1), "task 2 to start")
    started = time.time()
    res.revoke(terminate=True)
    report["revoke"] = outcome(res, started)
    # A countdown (the worker's timer is Greenlet.spawn_later).
    started = time.time()
    report["countdown"] = outcome(nap.apply_async((3, 0.0), countdown=1.0), started)
    report["runs"] = [int(x) for x in r.lrange(RUNS_KEY, 0, -1)]
    return report


if sys.argv[1] == "batch":
    out = batch(int(sys.argv[2]), float(sys.argv[3]))
else:
    out = features()
print(json.dumps(out), flush=True)
