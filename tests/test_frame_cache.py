"""The frame-chunk free list: greenlets reuse CPython's 16 KiB frame stacks.

What a user can observe is that greenlets keep working exactly as before
(deep recursion, many alive at once, threads, the opt-out) while the
list stays bounded; speed is shown by benches/compare.py, not asserted here.
"""

import os
import subprocess
import sys
import threading

import greenwheel as gw
from greenwheel import _core


def depth(n):
    # Enough Python frames to overflow one 16 KiB chunk many times over.
    return 0 if n == 0 else 1 + depth(n - 1)


def test_installed_by_default_and_bounded():
    installed, cached, capacity = _core._frame_cache_info()
    assert installed
    assert 0 <= cached <= capacity


def test_finished_greenlet_leaves_its_chunk_for_the_next_one():
    gw.joinall([gw.spawn(depth, 3) for _ in range(10)])
    _, cached, _ = _core._frame_cache_info()
    assert cached >= 1


def test_many_live_greenlets_finishing_keep_the_list_at_capacity():
    _, _, capacity = _core._frame_cache_info()
    n = capacity * 3
    glets = [gw.spawn(gw.sleep, 0.001 * (i % 5)) for i in range(n)]
    gw.joinall(glets)
    assert all(g.successful() for g in glets)
    _, cached, _ = _core._frame_cache_info()
    assert cached <= capacity


def test_deep_recursion_in_greenlets_is_correct():
    # Frames spill into extra (and larger) chunks; results must be exact.
    sizes = [1, 50, 300, 900, 50, 1]
    glets = [gw.spawn(depth, n) for n in sizes]
    gw.joinall(glets)
    assert [g.value for g in glets] == sizes


def test_threads_creating_and_ending_greenlets_concurrently():
    # Each thread has its own frame stacks and frees them when it ends,
    # sometimes without the GIL: the list must never hand a chunk out twice.
    results = []

    def worker(k):
        from greenlet import greenlet

        out = []
        for i in range(200):
            out.append(greenlet(depth).switch(i % 40 + k))
        results.append(out == [i % 40 + k for i in range(200)])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 4


def test_opt_out_leaves_cpython_allocator_alone():
    code = (
        "import greenwheel as gw, greenwheel._core as c\n"
        "g = gw.spawn(sum, [1, 2, 3]); g.join()\n"
        "print(c._frame_cache_info()[0], g.value)\n"
    )
    package_dir = os.path.dirname(os.path.dirname(gw.__file__))
    env = dict(os.environ, GREENWHEEL_FRAME_CACHE="0", PYTHONPATH=package_dir)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["False", "6"]


def test_parked_greenlets_of_native_functions_hold_no_frame_chunk():
    def park():
        gw.sleep(0.001)

    # Greenlets parked in a Python function each hold a chunk; when they end
    # the chunks come back to the list.
    gw.joinall([gw.spawn(park) for _ in range(50)])
    _, before, _ = _core._frame_cache_info()
    assert before >= 40
    sleepers = [gw.spawn(gw.sleep, 0.05) for _ in range(40)]
    gw.sleep(0)  # every sleeper has started and is parked in the Rust sleep
    assert not any(g.dead for g in sleepers)
    _, during, _ = _core._frame_cache_info()
    assert during == before
    gw.joinall(sleepers)
    assert all(g.successful() for g in sleepers)
