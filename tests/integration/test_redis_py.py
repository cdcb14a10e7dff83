"""redis-py under ``patch_all()`` against a real redis-server.

redis-py knows nothing about gevent: it works because its sockets become
greenwheel sockets. The proof that greenlets really overlap is the server's
own count: 100 clients are blocked in BLPOP *at the same time*, which a
program that blocked its thread on the first BLPOP could never reach.
"""

import json

from _childproc import run_python

WAITERS = 100

CHILD = r"""
import json, sys
from greenwheel import monkey
monkey.patch_all()
import greenwheel as gevent
import redis

url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
# The waiters share one client with redis-py's default pool (100 connections
# in redis-py 8); the observer that counts and pushes has its own.
r = redis.Redis.from_url(url)
admin = redis.Redis.from_url(url)
admin.delete(key)

def waiter(i):
    # A generous server-side timeout: every waiter must be woken by a push.
    got = r.blpop(key, timeout=30)
    return got[1].decode() if got else None

waiters = [gevent.spawn(waiter, i) for i in range(n)]

# Deterministic wait: the server reports how many clients block right now.
with gevent.Timeout(20, AssertionError("waiters never all blocked")):
    while int(admin.info("clients")["blocked_clients"]) < n:
        gevent.sleep(0.01)
blocked = int(admin.info("clients")["blocked_clients"])

admin.rpush(key, *["item-%d" % i for i in range(n)])
gevent.joinall(waiters, timeout=20, raise_error=True)
print(json.dumps({
    "blocked_at_once": blocked,
    "results": [g.value for g in waiters],
    "all_done": all(g.ready() for g in waiters),
    "pool_connections": len(r.connection_pool._available_connections)
                        + len(r.connection_pool._in_use_connections),
    "left_in_list": admin.llen(key),
}))
"""


def test_100_blpop_waiters_block_together_and_are_all_woken(redis):
    proc = run_python(CHILD, redis.url, "gw:blpop", str(WAITERS), timeout=90)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked_at_once"] == WAITERS
    assert out["all_done"]
    # Every pushed item reached exactly one waiter: none lost, none doubled.
    assert sorted(out["results"]) == sorted("item-%d" % i for i in range(WAITERS))
    assert out["left_in_list"] == 0
    # One connection per concurrent waiter, from redis-py's default pool.
    assert out["pool_connections"] == WAITERS
