"""PostgreSQL drivers under greenwheel, unmodified, against a real server.

Both drivers decide by the name ``gevent`` whether to cooperate, so the
application runs through the alias (``python -m greenwheel.as_gevent``):

- psycopg2 cooperates through a wait callback: psycogreen's
  ``patch_psycopg()`` installs one that polls the connection and waits with
  ``gevent.socket.wait_read`` / ``wait_write``.
- psycopg 3's C build (``psycopg[binary]``) picks its wait function when
  ``psycopg.waiting`` is imported: its C ``wait_c`` blocks the thread unless
  ``sys.modules["gevent.monkey"].is_module_patched("select")``, in which case
  it waits with the (patched) ``select.poll``. Through the alias
  ``from gevent import monkey`` must therefore leave ``gevent.monkey`` in
  ``sys.modules`` (the import system files a from-list submodule under the
  package's ``__name__``, ``greenwheel``; the alias files it under both).

50 greenlets each hold their own connection and run ``SELECT pg_sleep(0.2)``;
one query at a time would take 10 s, the assertion is under 1 s.

The controls show the assertion can fail, and what a user gets without the
pieces above: psycopg2 without the wait callback, and psycopg 3 patched by
``greenwheel.monkey.patch_all()`` without the alias, both run the queries
one at a time.
"""

import json

import pytest

from _childproc import run_python

DELAY = 0.2
QUERIES = 50
CONTROL_QUERIES = 10

CHILD = r"""
import json, sys, time

dsn, driver, setup, n, delay = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
if setup == "gevent":
    from gevent import monkey
    monkey.patch_all()
    import gevent
else:  # greenwheel's own names (with or without the alias)
    from greenwheel import monkey
    monkey.patch_all()
    import greenwheel as gevent

info = {"gevent_monkey_in_sys_modules": "gevent.monkey" in sys.modules}
if driver == "psycopg2":
    import psycopg2
    connect = psycopg2.connect
    if setup == "gevent":  # a gevent application: psycogreen's wait callback
        import psycogreen.gevent
        psycogreen.gevent.patch_psycopg()
        info["wait_callback"] = psycopg2.extensions.get_wait_callback().__module__
else:
    import psycopg
    from psycopg import waiting
    connect = psycopg.connect
    info["impl"] = psycopg.pq.__impl__
    info["wait"] = waiting.wait.__name__

conns = [None] * n

def open_conn(i):
    conns[i] = connect(dsn)

def query(i):
    cur = conns[i].cursor()
    cur.execute("SELECT pg_sleep(%s), %s", (delay, i))
    return cur.fetchone()[1]

# Connections open (concurrently) before the clock starts: the measure is the queries.
gevent.joinall([gevent.spawn(open_conn, i) for i in range(n)], timeout=60, raise_error=True)
start = time.monotonic()
jobs = [gevent.spawn(query, i) for i in range(n)]
gevent.joinall(jobs, timeout=60, raise_error=True)
info["elapsed"] = time.monotonic() - start
info["results"] = [job.value for job in jobs]
info["backend_pids"] = len({c.info.backend_pid if driver == "psycopg" else c.get_backend_pid()
                            for c in conns})
for c in conns:
    c.close()
print(json.dumps(info))
"""


def _run(dsn, driver, setup, n, alias=True):
    proc = run_python(
        CHILD,
        dsn,
        driver,
        setup,
        str(n),
        str(DELAY),
        timeout=60,
        python_args=("-m", "greenwheel.as_gevent") if alias else (),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_concurrent(out, what):
    serial = QUERIES * DELAY
    print(
        "%s: %d x pg_sleep(%.1f) in %.3f s (serial %.0f s)"
        % (what, QUERIES, DELAY, out["elapsed"], serial)
    )
    assert out["results"] == list(range(QUERIES))
    assert out["backend_pids"] == QUERIES  # each greenlet on its own connection
    assert out["elapsed"] < 1.0, out


def _check_serial(out, what):
    serial = CONTROL_QUERIES * DELAY
    print(
        "%s: %d queries in %.3f s (serial %.1f s)" % (what, CONTROL_QUERIES, out["elapsed"], serial)
    )
    assert out["results"] == list(range(CONTROL_QUERIES))
    assert out["elapsed"] >= serial * 0.8, out


def test_psycopg2_with_psycogreen_runs_50_queries_at_once(postgres):
    out = _run(postgres.dsn, "psycopg2", "gevent", QUERIES)
    assert out["wait_callback"] == "psycogreen.gevent"
    _check_concurrent(out, "psycopg2 + psycogreen")


def test_control_psycopg2_without_the_wait_callback_runs_queries_one_at_a_time(postgres):
    # patch_all() alone cannot help: libpq does its own blocking socket I/O in C.
    out = _run(postgres.dsn, "psycopg2", "greenwheel", CONTROL_QUERIES)
    assert "wait_callback" not in out
    _check_serial(out, "psycopg2 control (no wait callback)")


@pytest.mark.parametrize("setup", ["gevent", "greenwheel"])
def test_psycopg3_c_build_under_patch_all_runs_50_queries_at_once(postgres, setup):
    # Through the alias, patching by either name is seen by psycopg's check.
    out = _run(postgres.dsn, "psycopg", setup, QUERIES)
    assert out["impl"] in ("binary", "c"), out["impl"]
    assert out["gevent_monkey_in_sys_modules"]
    _check_concurrent(out, "psycopg 3 (%s, monkey from %s)" % (out["impl"], setup))


def test_control_psycopg3_patched_without_the_alias_runs_queries_one_at_a_time(postgres):
    # Without the alias no module is named gevent.monkey, so psycopg keeps its
    # C wait, which blocks the whole thread (and every greenlet) per query.
    out = _run(postgres.dsn, "psycopg", "greenwheel", CONTROL_QUERIES, alias=False)
    assert out["impl"] in ("binary", "c") and not out["gevent_monkey_in_sys_modules"]
    assert out["wait"] == "wait_c"
    _check_serial(out, "psycopg 3 control (no alias)")
