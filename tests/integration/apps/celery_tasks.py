"""Celery application used by tests/integration/test_celery.py.

Plain celery with the redis broker and the redis result backend, all settings
at their defaults (broker_pool_limit included). The broker URL comes from
CELERY_TEST_URL so the test can point it at its own redis-server database.

``nap`` records every *execution* (not just every result) by pushing its
index onto a redis list: a message delivered twice, as a lost ack causes,
shows up there as a duplicate even though the result backend would only keep
the last result. It pushes the index onto a second list when it completes its
sleep, which a task that was killed never does. Each result also names the library that ``import gevent``
gave the worker, so a worker that silently ran on real gevent cannot pass.
"""

import os
import sys
import time

import redis
from celery import Celery

URL = os.environ["CELERY_TEST_URL"]
RUNS_KEY = "gw:celery:runs"
DONE_KEY = "gw:celery:done"

app = Celery("celery_tasks", broker=URL, backend=URL)
runs = redis.Redis.from_url(URL)


@app.task
def nap(i, seconds=0.1):
    runs.rpush(RUNS_KEY, i)
    started = time.time()
    time.sleep(seconds)
    runs.rpush(DONE_KEY, i)
    # celery's gevent pool imported gevent before this runs
    return [i, started, time.time(), sys.modules["gevent"].__name__]
